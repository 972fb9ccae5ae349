"""The reproduction scorecard (polarnet.analysis.scorecard): hand-made stores whose verdicts are known, the
reasons of claims that did not run, one row per claim, a self-contained page, and a real tiny study."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from polarnet.analysis.claims import AGREES, DISAGREES, NOT_RUN, claims
from polarnet.analysis.scorecard import StudyStatus, build_scorecard, evaluate, required_points, required_studies
from polarnet.experiments import load_study, run_study
from polarnet.experiments.plan import plan
from polarnet.experiments.results import EpochRecord, RunResult
from polarnet.experiments.store import Store

EPOCHS = 10


def _curve(reach: int, final: float, jitter: float) -> list[EpochRecord]:
    """Validation accuracy 0.5 until epoch ``reach``, then 0.85 rising to ``final``; the loss falls every
    epoch, so the accuracy at convergence is the last one."""
    accs = [0.5] * (reach - 1) + list(__import__("numpy").linspace(0.85, final, EPOCHS - reach + 1))
    return [EpochRecord(e + 1, 0.5, 0.9, 1.0 - 0.05 * e, acc - jitter, 0, {"0.weight": 0.01}, 0.0)
            for e, acc in enumerate(accs)]


def _hand_store(folder: Path, preset: str, overrides: list[str], outcome) -> Path:
    """A store of ``preset`` with ``overrides`` whose runs have the curves ``outcome(spec)`` gives."""
    study = load_study(preset, overrides)
    specs = plan(study)
    with Store(folder) as store:
        store.set_study({"settings": study.to_dict()})
        store.mark_running(specs)
        store.record([RunResult(spec.key, "done", epochs=outcome(spec)) for spec in specs])
    return folder


def _fig1(spec) -> list[EpochRecord]:
    """Frozen Sufficient reaches 80% at epoch 3-4 and ends at 95%; Frozen RAND and Fluid RAND at 6-7, 90%."""
    jitter = 0.001 * spec.trial
    if spec.condition.name == "frozen_sufficient":
        return _curve(3 + spec.trial % 2, 0.95, jitter)
    return _curve(6 + spec.trial % 2, 0.90, jitter)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stores")
    xor = _hand_store(root / "xor5d", "xor5d", ["trials=10", f"epochs={EPOCHS}", "sizes=[60, 72]"], _fig1)
    (xor / "report.html").write_text("<html>the study's own report</html>")

    def width(spec):  # every 15-unit Frozen RAND net learns, 3 of 10 three-unit nets do
        learned = spec.hidden == 15 or spec.trial < 3
        return _curve(3, 0.99 if learned else 0.7, 0.0)

    wide = _hand_store(root / "width", "xor5d-width", ["trials=10", f"epochs={EPOCHS}", "sizes=[500]",
                                                        "hidden=[3, 15]", "conditions=['frozen_rand']"], width)
    (root / "empty").mkdir()
    return {"xor5d": xor, "xor5d-width": wide, "empty": root / "empty"}


REASONS = {"cifar10-alexnet": "needs CIFAR-10: put it in DIR/data/cifar10",
           "fmnist-alexnet": "needs ImageNet AlexNet weights (AlexNet_Weights.IMAGENET1K_V1)",
           "spin-table1": "needs a GPU: ~40 h on 2 cores"}


@pytest.fixture(scope="module")
def scorecard(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("scorecard")
    statuses = {"xor5d": StudyStatus("xor5d", stores["xor5d"], report=stores["xor5d"] / "report.html", quick=True),
                "xor5d-width": StudyStatus("xor5d-width", stores["xor5d-width"]),
                "xor5d-reset": StudyStatus("xor5d-reset", stores["empty"]),  # ran, but its store is gone
                **{key: StudyStatus(key, None, reason) for key, reason in REASONS.items()}}
    html, md = build_scorecard(out, statuses, budget="quick", mc_trials=200)
    return statuses, out, html, md


def _rows(md: str) -> dict[str, list[str]]:
    """The claims tables' rows of scorecard.md by claim text: its cells."""
    rows = {}
    for line in md.split("\n"):
        if re.match(r"\| \d+ \| (Wang|Igoe) \|", line):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[3]] = cells
    return rows


def _row(md: str, name: str) -> list[str]:
    claim = next(c for c in claims() if c.name == name)
    return _rows(md)[claim.claim]


def test_one_row_per_claim_with_verdicts_known_from_the_hand_made_store(scorecard) -> None:
    _, _, _, md_path = scorecard
    md = md_path.read_text()
    assert len(_rows(md)) == len(claims())
    expected = {"wang_xor_sufficient_faster": AGREES, "wang_xor_sufficient_time_60": AGREES,
                "wang_xor_sufficient_time_72": AGREES, "wang_xor_sufficient_fewer_samples": AGREES,
                "wang_xor_rand_not_slower": AGREES, "wang_xor_rand_not_worse": AGREES,
                "wang_xor_rand_sometimes_faster": DISAGREES, "wang_xor_rand_sometimes_fewer_samples": DISAGREES,
                "wang_learnability_simulation": AGREES, "wang_learnability_theory": AGREES,
                "igoe_compression": AGREES}
    for name, verdict in expected.items():
        row = _row(md, name)
        assert row[6].split(" *(quick)*")[0] == verdict, (name, row)
    ratio = _row(md, "wang_xor_sufficient_time_60")
    assert ratio[4] == "58% of Fluid's epochs at n = 60" and "95% CI" in ratio[5] and ratio[5].startswith("53.8%")
    # the rows of the quick study say so; the width study ran with full settings
    assert _row(md, "wang_xor_sufficient_faster")[6].endswith("*(quick)*")
    assert not _row(md, "wang_learnability_simulation")[6].endswith("*(quick)*")


def test_claims_that_did_not_run_carry_the_reason(scorecard) -> None:
    _, _, _, md_path = scorecard
    md = md_path.read_text()
    for claim in claims():
        row = _rows(md)[claim.claim]
        keys = [need.study for need in claim.needs]
        for key, reason in REASONS.items():
            if key in keys:
                assert row[6] == NOT_RUN and row[7] == reason, claim.name
        if "xor5d-reset" in keys:
            assert row[6] == NOT_RUN and "xor5d-reset's store" in row[7] and "cannot be read" in row[7]
        if keys and keys[0].startswith("spin-") and keys[0] != "spin-table1":
            assert row[6] == NOT_RUN and row[7] == f"not planned: no `{keys[0]}` study was given"
    studies = md.split("## Studies")[1]
    assert "| cifar10-alexnet | not run | needs CIFAR-10: put it in DIR/data/cifar10 |" in studies
    assert "| spin-zfnet-fmnist | not planned |" in studies


def test_the_page_is_self_contained_and_links_only_the_study_reports(scorecard) -> None:
    statuses, out, html_path, md_path = scorecard
    html = html_path.read_text()
    assert html.count('src="data:image/png;base64,') == 1  # Fig. 4A, embedded
    sources = re.findall(r"""\bsrc=["']([^"']+)""", html)
    assert all(s.startswith("data:") for s in sources)
    links = set(re.findall(r"""\bhref=["']([^"']+)""", html))
    assert len(links) == 1 and (out / links.pop()).resolve() == statuses["xor5d"].report.resolve()
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert html.count('<tr id="claim-') == len(claims())
    md = md_path.read_text()
    figure = re.search(r"!\[Fig\. 4A\]\(([^)]+)\)", md).group(1)
    assert (out / figure).is_file() and figure.endswith(".png")
    assert "[xor5d](" in md  # the rows link the study's report


def test_fig_4a_holds_the_simulation_and_says_which_curve_it_follows(scorecard) -> None:
    _, out, html_path, md_path = scorecard
    md = md_path.read_text()
    section = md.split("## Wang et al. Fig. 4A")[1].split("## Studies")[0]
    assert "**Finding:**" in section and re.search(r"follows|closer to|cannot tell|neither", section)
    assert "| 15 | 0.9947 | 0.9267 |" in section and "100% of 10 (69%–100%)" in section
    assert "| 3 | 0.1135 | 0.0469 |" in section and "30% of 10" in section
    assert "Finding" in html_path.read_text()


def test_the_scorecard_is_deterministic(scorecard, tmp_path) -> None:
    statuses, _, _, md_path = scorecard
    again = build_scorecard(tmp_path, statuses, budget="quick", mc_trials=200)[1].read_text()
    assert again.replace(str(tmp_path), "") == md_path.read_text().replace(str(md_path.parent), "")


def test_a_study_missing_a_size_or_a_condition_says_which(tmp_path) -> None:
    small = _hand_store(tmp_path / "a", "xor5d", ["trials=3", f"epochs={EPOCHS}", "sizes=[60]",
                                                   "conditions=['frozen_rand', 'fluid_rand']"], _fig1)
    rows = {r.claim.name: r for r in evaluate({"xor5d": StudyStatus("xor5d", small)})}
    assert rows["wang_xor_sufficient_faster"].result.verdict == NOT_RUN
    assert rows["wang_xor_sufficient_faster"].result.finding == "`xor5d` ran without frozen_sufficient"
    assert rows["wang_xor_rand_not_worse"].result.verdict != NOT_RUN
    both = _hand_store(tmp_path / "b", "xor5d", ["trials=3", f"epochs={EPOCHS}", "sizes=[60]"], _fig1)
    row = {r.claim.name: r for r in evaluate({"xor5d": StudyStatus("xor5d", both)})}["wang_xor_sufficient_time_72"]
    assert row.result.verdict == NOT_RUN
    assert row.result.finding == "`xor5d` has no finished frozen_sufficient runs at n = 72 (it ran n = 60)"


def test_required_studies_and_points_come_from_the_registry() -> None:
    studies = required_studies()
    assert set(studies) == {n.study for c in claims() for n in c.needs}
    assert set(studies["fmnist-alexnet"]) == {"frozen_in_polarity", "fluid_in_polarity", "frozen_rand", "fluid_rand",
                                              "fluid_in_weight", "frozen_in_weight"}
    assert studies["spin-table1"][0] == "table1_in" and len(studies["spin-table1"]) == 8
    for key, conditions in studies.items():  # every condition the claims need is in the preset
        assert set(conditions) <= set(load_study(key, validate=False).conditions), key
    points = required_points()
    assert points["xor5d"]["sizes"] == (60, 72) and points["cifar10-alexnet"]["sizes"] == (100, 50000)
    assert points["xor5d-width"]["hidden"] == (3, 10, 15) and points["xor5d-reset"]["resets"] == (
        "flip", "posCon", "posRand", "zero")


def test_a_real_tiny_study_end_to_end(tmp_path) -> None:
    from polarnet.analysis.report import build_report

    folder = tmp_path / "xor5d"
    run_study(load_study("xor5d", ["trials=3", "epochs=4", "sizes=[60, 72]", "val_size=200"]), folder, workers=1,
              progress=False)
    report, _ = build_report(folder)
    html, md = build_scorecard(tmp_path / "reproduce", {"xor5d": StudyStatus("xor5d", folder, report=report,
                                                                             quick=True)}, mc_trials=200)
    rows = _rows(md.read_text())
    assert len(rows) == len(claims())
    measured = [r for r in rows.values() if r[-1].startswith("[xor5d](../xor5d/report.html)")]
    assert len(measured) == 8 and all(r[6] != NOT_RUN for r in measured)
    assert 'href="../xor5d/report.html"' in html.read_text()
