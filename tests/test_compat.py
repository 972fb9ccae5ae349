"""Compatibility with what polarnet 0.1.0 planned and stored (issue 23, item 3).

Studies are resumed by run key: a key that changes orphans every stored run of its study. So
the keys of every preset (tests/fixtures/run_keys.json) and real stores written by 0.1.0
(tests/fixtures/store-v0.1.0/) are pinned here, before the settings are declared anew. Both
fixtures are written by the scripts beside them; rewrite them only for an intended key change.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from polarnet.cli import main
from polarnet.experiments import Store, list_presets, load_study, run_study

FIXTURES = Path(__file__).with_name("fixtures")
STORES = FIXTURES / "store-v0.1.0"
STUDIES = json.loads((STORES / "studies.json").read_text())
RUN_KEYS = json.loads((FIXTURES / "run_keys.json").read_text())
REGENERATE = ("only if the change is intended: .venv/bin/python tests/fixtures/make_run_keys.py, "
              "and say so in the commit")


def _make_run_keys():
    spec = importlib.util.spec_from_file_location("make_run_keys", FIXTURES / "make_run_keys.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_run_keys = _make_run_keys()


def test_the_fixture_covers_every_preset_full_and_quick() -> None:
    expected = {entry for name in list_presets() for entry in (name, f"{name} --quick")}
    assert set(RUN_KEYS) == expected, f"presets added or removed since run_keys.json was written; {REGENERATE}"
    # the presets that cannot validate without their files are planned all the same, and say why
    unvalidated = sorted(name for name, entry in RUN_KEYS.items() if "unvalidated" in entry)
    assert unvalidated == ["fmnist-split-transfer", "fmnist-split-transfer --quick",
                           "split-transfer-learners", "split-transfer-learners --quick"]
    assert all("source='fmnist-classes-0-4.pt': no such file" in RUN_KEYS[name]["unvalidated"] for name in unvalidated)


@pytest.mark.parametrize("entry", sorted(RUN_KEYS))
def test_every_preset_keeps_its_run_keys_and_data_key(entry, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # as the fixture was written: a relative source file is absent
    name, _, quick = entry.partition(" --")
    now = make_run_keys.preset_entry(name, quick=bool(quick))
    was = RUN_KEYS[entry]
    # the readable parts first, so a failure shows what changed
    assert (now["runs"], now["first_keys"]) == (was["runs"], was["first_keys"]), \
        f"{entry}: run keys changed; {REGENERATE}"
    assert now["sha256"] == was["sha256"], f"{entry}: some run key beyond the first {make_run_keys.SHOWN} changed"
    assert now["data_key"] == was["data_key"], f"{entry}: the data cache key changed; {REGENERATE}"
    assert ("unvalidated" in now) == ("unvalidated" in was)


@pytest.fixture
def store_copy(tmp_path, fake_fashion, monkeypatch):
    """A writable copy of a 0.1.0 study folder, with the fake Fashion-MNIST it was trained on
    found through ``$POLARNET_DATA`` (the stored settings name no data folder)."""
    monkeypatch.setenv("POLARNET_DATA", str(fake_fashion))

    def copy(study: str) -> Path:
        folder = tmp_path / "stores" / study
        folder.mkdir(parents=True)
        shutil.copy(STORES / study / "results.sqlite", folder / "results.sqlite")
        return folder

    return copy


def _stored_keys(folder: Path) -> list[str]:
    with sqlite3.connect(folder / "results.sqlite") as db:
        return [key for (key,) in db.execute("SELECT key FROM runs WHERE status = 'done'")]


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_a_v0_1_0_store_resumes_with_nothing_to_train(study, store_copy) -> None:
    folder = store_copy(study)
    stored = _stored_keys(folder)
    assert len(stored) == len(pd.read_csv(STORES / study / "runs.csv")) > 0
    how = STUDIES[study]
    summary = run_study(load_study(how["preset"], how["overrides"]), folder, workers=1, device="cpu", progress=False)
    # every planned run's key is one the old code stored: nothing is trained again
    assert (summary.total, summary.skipped, summary.trained, summary.failed) == (len(stored), len(stored), 0, 0)


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_polarnet_results_exports_the_rows_0_1_0_exported(study, store_copy, tmp_path) -> None:
    folder = store_copy(study)
    out = tmp_path / "export"
    assert main(["results", str(folder), "-o", str(out)]) == 0
    for table in ("runs", "epochs"):
        now, was = pd.read_csv(out / f"{table}.csv"), pd.read_csv(STORES / study / f"{table}.csv")
        assert len(was) > 0
        pd.testing.assert_frame_equal(now, was, check_exact=True, obj=f"{study}/{table}.csv")


@pytest.mark.parametrize("study", sorted(STUDIES))
def test_the_stored_checksums_verify(study, store_copy) -> None:
    folder = store_copy(study)
    with sqlite3.connect(folder / "results.sqlite") as db:
        unchecked = db.execute("SELECT count(*) FROM runs WHERE checksum IS NULL").fetchone()[0]
    assert unchecked == 0  # every run has a checksum, so verifying checks every run
    with Store.existing(folder) as store:
        assert store.damaged_runs() == []
        store.verify()
    # and the check can fail: one stored loss changed is one damaged run
    with sqlite3.connect(folder / "results.sqlite") as db:
        key = db.execute("SELECT run FROM epochs ORDER BY run, epoch LIMIT 1").fetchone()[0]
        db.execute("UPDATE epochs SET train_loss = train_loss + 1 WHERE run = ? AND epoch = "
                   "(SELECT min(epoch) FROM epochs WHERE run = ?)", (key, key))
    with Store.existing(folder) as store:
        assert store.damaged_runs() == [key]
