from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from polarnet.analysis.claims import CLAIMS, check_claims
from polarnet.analysis.report import build_report
from polarnet.cli import main
from polarnet.experiments import load_study, run_study


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    study = load_study("xor5d-reset", ["trials=3", "epochs=6", "sizes=[20, 60]", "resets=['posRand', 'zero']",
                                       "val_size=300"])
    run_study(study, folder, workers=1, progress=False)
    return folder


def test_report_holds_every_figure_and_table_and_needs_no_network(study_folder, tmp_path) -> None:
    html_path, md_path = build_report(study_folder, tmp_path / "out" / "r.html")
    html, md = html_path.read_text(), md_path.read_text()
    assert html_path.name == "r.html" and md_path.name == "r.md"
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    # an efficiency and a difference figure per reset rule (fluid runs join both), the reset-rule
    # comparison, the curves, the sign changes and the initial magnitudes
    assert len(figures) == 8 and all((md_path.parent / f).is_file() for f in figures)
    assert sum("differences-" in f for f in figures) == 2 and any("reset-rules" in f for f in figures)
    assert html.count("data:image/png;base64,") == len(figures)
    assert not re.search(r"""(src|href)=["']?https?://""", html)  # self-contained
    for heading in ("Per condition", "Efficiency — hidden 64, reset posRand", "Efficiency — hidden 64, reset zero",
                    "Reset rules", "Convergence", "Learning curves", "Sign changes", "Magnitudes at initialisation",
                    "Claims",
                    "Statistics: error at convergence vs fluid_rand", "Settings"):
        assert f"## {heading}" in md and heading in html
    assert md.count("| condition |") >= 4  # the summary, the convergence table and two statistics tables
    assert "this study agrees" in md or "does not fully agree" in md


def test_report_cli_and_missing_store(study_folder, tmp_path, capsys) -> None:
    assert main(["report", str(study_folder)]) == 0
    assert (study_folder / "report.html").is_file() and "wrote" in capsys.readouterr().out
    assert main(["report", str(tmp_path)]) == 2
    assert "no results.sqlite" in capsys.readouterr().err


def test_claims_are_computed_not_asserted() -> None:
    per_run = pd.DataFrame({
        "condition": ["frozen_sufficient"] * 2 + ["fluid_rand"] * 2, "n_train": [8, 20, 8, 20], "trial": [0] * 4,
        "epochs_to_threshold": [3.0, 2.0, 5.0, 1.0], "error_at_convergence": [0.1, 0.3, 0.2, 0.2]})
    verdicts = {v.claim: v for v in check_claims(per_run, 0.8)}
    faster = verdicts["frozen_sufficient learns faster (fewer epochs) than fluid_rand at every training size"]
    assert faster.finding.endswith("at 1 of 2 sizes") and not faster.agrees
    samples = verdicts["frozen_sufficient is never worse than fluid_rand (validation error at convergence)"]
    assert samples.finding.endswith("at 1 of 2 sizes") and not samples.agrees
    assert "rand_not_worse" in CLAIMS.names()  # applies only when frozen_rand is in the study
    assert len(verdicts) == 2


def test_width_study_report_has_the_learnability_figure_and_other_thresholds(tmp_path) -> None:
    study = load_study("xor5d-width", ["trials=2", "epochs=3", "sizes=[40]", "hidden=[2, 3, 8]", "val_size=200",
                                       "thresholds=[0.8, 0.6]"])
    run_study(study, tmp_path, workers=1, progress=False)
    html_path, md_path = build_report(tmp_path)
    md = md_path.read_text()
    assert "## Learnability" in md and "theory.png" in md and "| units |" in md
    assert "## Efficiency at 60%" in md


def test_compare_two_studies(tmp_path, capsys) -> None:
    from polarnet.analysis.compare import compare_studies

    base = ["trials=2", "epochs=4", "sizes=[20, 60]", "val_size=200", "conditions=['frozen_rand', 'fluid_rand']"]
    run_study(load_study("xor5d", base), tmp_path / "a", workers=1, progress=False)
    run_study(load_study("xor5d", base + ["resets=['zero']", "sizes=[60, 100]"]), tmp_path / "b", workers=1,
              progress=False)
    table = compare_studies(tmp_path / "a", tmp_path / "b")
    rows = {(r.condition, r.n_train, r.reset): r for r in table.itertuples(index=False)}
    # fluid runs are the same runs in both studies (same keys): no difference
    assert rows[("fluid_rand", 60, "none")].median_error_b_minus_a == 0
    assert math.isnan(rows[("fluid_rand", 20, "none")].median_error_b)  # only study A has n = 20
    assert ("frozen_rand", 60, "zero") in rows and ("frozen_rand", 60, "posRand") in rows
    out = tmp_path / "cmp.md"
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out)]) == 0
    assert "median_error_b_minus_a" in out.read_text() and "vs" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "none")]) == 2


def test_initial_magnitudes_are_recorded_and_shared_by_the_conditions_of_a_trial(study_folder) -> None:
    from polarnet.experiments import Store
    from polarnet.experiments.results import QUANTILES

    with Store(study_folder) as store:
        mags = store.magnitudes()
    assert set(mags["layer"]) == {"0.weight", "2.weight"}
    levels = list(QUANTILES)
    assert (mags[levels].diff(axis=1).iloc[:, 1:] >= 0).all().all()  # quantiles increase
    for (n, trial, layer), group in mags.groupby(["n_train", "trial", "layer"]):
        first = group[levels].iloc[0].to_numpy()
        for _, row in group.iterrows():  # frozen and fluid, every reset rule: the same draw
            assert row[levels].to_numpy() == pytest.approx(first)
    html_path, md_path = build_report(study_folder)
    assert "## Magnitudes at initialisation" in md_path.read_text()


def test_claims_sit_beside_their_figures(study_folder) -> None:
    md = build_report(study_folder)[1].read_text()
    efficiency = md.split("## Efficiency — hidden 64, reset posRand")[1].split("## ")[0]
    assert "**Claim (Wang et al. Fig. 1C):** frozen_sufficient learns faster" in efficiency
    here = efficiency.split("**Claim (Wang et al. Fig. 1C):**")[1].split("\n")[0]
    assert "**Here:**" in here and ("fewer median epochs than fluid_rand at" in here or "no size where both" in here)
    assert here.endswith("this study agrees.") or here.endswith("this study does not fully agree.")
