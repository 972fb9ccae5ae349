"""Checkpoints (issue 22 §5): one verified format for runs, image ensembles and XOR ensembles; a
file damaged on disk is refused like a torn one (a warning, training from the start)."""

from __future__ import annotations

import math
import struct
import warnings
import zipfile

import pytest
import torch

from polarnet.experiments import load_study, plan
from polarnet.experiments.checkpoint import Checkpoint, ensemble_checkpoint_file
from polarnet.experiments.ensemble import train_ensemble
from polarnet.experiments.image_ensemble import train_image_ensemble
from polarnet.experiments.trainer import train_run


class _Stop(Exception):
    """What a test's on_epoch raises to interrupt training."""


def _stop_after(epochs: int):
    seen = []

    def stop(_work: float) -> None:
        seen.append(1)
        if len(seen) == epochs:
            raise _Stop

    return stop


def _flip_tensor_byte(path) -> str:
    """Flip one bit in the middle of the largest tensor's bytes, as a damaged disk might; the
    archive stays whole and ``torch.load`` reads it without a word. Returns the record's name."""
    with zipfile.ZipFile(path) as archive:
        record = max((i for i in archive.infolist() if "/data/" in i.filename and "/.data/" not in i.filename),
                     key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[record.header_offset + 26 : record.header_offset + 30])
    raw[record.header_offset + 30 + name_len + extra_len + record.file_size // 2] ^= 0x10
    path.write_bytes(bytes(raw))
    torch.load(path, weights_only=True)  # loads: torch doesn't check the records' CRC-32
    return record.filename


def _rows(result) -> list[dict]:
    return [vars(e) | {"wall": 0} for e in result.epochs]


# -- the module --------------------------------------------------------------------------------------

def test_a_checkpoint_reads_back_what_was_written(tmp_path) -> None:
    state = {"epoch": 3, "w": torch.randn(5, 7), "history": [1.5, float("nan")]}
    ckpt = Checkpoint(tmp_path / "deep" / "a.pt")
    ckpt.write(state)
    back = ckpt.read(lambda s: None, "run x")
    assert back is not None and back["epoch"] == 3 and torch.equal(back["w"], state["w"])
    assert back["history"][0] == 1.5 and math.isnan(back["history"][1])
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["a.pt"]  # no temporary left behind


@pytest.mark.parametrize("damage", ["flipped", "truncated", "not an archive", "refused"])
def test_an_unusable_checkpoint_is_one_warning_and_none(tmp_path, damage) -> None:
    path = tmp_path / "a.pt"
    ckpt = Checkpoint(path)
    ckpt.write({"epoch": 1, "w": torch.arange(1000.0)})
    if damage == "flipped":
        assert _flip_tensor_byte(path) == "archive/data/0"
        why = r"record 'archive/data/0' fails its CRC-32 check: the file is damaged"
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
        why = "not a whole checkpoint archive"
    elif damage == "not an archive":
        path.write_bytes(b"PK\x03\x04 not a whole file")
        why = "not a whole checkpoint archive"
    else:
        why = "it belongs to run y"

    def check(state):
        if damage == "refused":
            raise ValueError("it belongs to run y")

    with pytest.warns(RuntimeWarning, match=rf"checkpoint .*a\.pt is unusable \(ValueError: {why}.*\); training run x "
                                             r"from the start") as caught:
        assert ckpt.read(check, "run x") is None
    assert len(caught) == 1


def test_checkpoints_are_verified_even_when_the_user_turned_torchs_crc32_off(tmp_path) -> None:
    if not hasattr(torch.serialization, "set_crc32_options"):
        pytest.skip("torch < 2.6 always writes the CRC-32")
    torch.serialization.set_crc32_options(False)
    try:
        Checkpoint(tmp_path / "a.pt").write({"w": torch.arange(1000.0)})
        assert not torch.serialization.get_crc32_options()  # the user's setting is left as it was
    finally:
        torch.serialization.set_crc32_options(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Checkpoint(tmp_path / "a.pt").read(lambda s: None, "x") is not None


def test_writing_is_throttled_to_its_share_of_the_time(tmp_path) -> None:
    ckpt = Checkpoint(tmp_path / "a.pt", overhead=1e-9)  # writing "costs" forever after the first write
    assert [ckpt.after_epoch(lambda: {"epoch": e}, last=e == 4) for e in (1, 2, 3, 4)] == [True, False, False, False]
    always = Checkpoint(tmp_path / "b.pt", overhead=math.inf)
    assert [always.after_epoch(lambda: {"epoch": e}, last=e == 4) for e in (1, 2, 3, 4)] == [True, True, True, False]
    assert always.read(lambda s: None, "x") == {"epoch": 3}  # never the last epoch: its result follows
    with pytest.raises(ValueError, match="checkpoint_overhead must be > 0, got 0"):
        Checkpoint(tmp_path / "c.pt", overhead=0)


def test_ensemble_checkpoint_files_are_named_by_their_runs(tmp_path) -> None:
    runs = plan(load_study("xor5d", ["trials=2", "sizes=[8]"]))
    path = ensemble_checkpoint_file(tmp_path, runs)
    assert path.parent == tmp_path and path.name.startswith("ensemble-") and path.suffix == ".pt"
    assert path == ensemble_checkpoint_file(tmp_path, runs[::-1]) != ensemble_checkpoint_file(tmp_path, runs[1:])


# -- each trainer refuses a damaged checkpoint, and trains from the start ----------------------------

def _resumed_from_a_damaged_checkpoint(train, runs, path) -> tuple[list, list, int]:
    """``train`` uninterrupted; then stopped after 2 of 4 epochs with its checkpoint written, a byte
    of tensor data flipped in that file, and ``train`` again from it: (straight rows, resumed rows,
    epochs the resumed call trained). The resumed call must warn."""
    straight = train(runs)
    with pytest.raises(_Stop):
        train(runs, on_epoch=_stop_after(2), checkpoint=path, checkpoint_overhead=math.inf)
    _flip_tensor_byte(path)
    epochs = []
    with pytest.warns(RuntimeWarning, match="fails its CRC-32 check"):
        resumed = train(runs, on_epoch=epochs.append, checkpoint=path)
    rows = lambda results: [_rows(r) for r in (results if isinstance(results, list) else [results])]  # noqa: E731
    return rows(straight), rows(resumed), len(epochs)


def test_a_damaged_run_checkpoint_trains_the_run_from_the_start(tmp_path) -> None:
    run = next(r for r in plan(load_study("xor5d", ["trials=1", "epochs=4", "sizes=[40]", "val_size=200"]))
               if r.condition.frozen)
    straight, resumed, epochs = _resumed_from_a_damaged_checkpoint(train_run, run, tmp_path / "run.pt")
    assert epochs == 4 and resumed == straight  # every epoch trained again


def test_a_damaged_xor_ensemble_checkpoint_trains_the_ensemble_from_the_start(tmp_path) -> None:
    runs = plan(load_study("xor5d", ["trials=2", "epochs=4", "sizes=[8, 40]", "val_size=200"]))
    straight, resumed, epochs = _resumed_from_a_damaged_checkpoint(train_ensemble, runs,
                                                                   ensemble_checkpoint_file(tmp_path, runs))
    assert epochs == 4 and resumed == straight


def test_a_damaged_image_ensemble_checkpoint_is_not_used(tmp_path, fake_fashion) -> None:
    """The issue's case: bytes flipped inside the tensor data of checkpoints/ensemble-*.pt. Before,
    the resumed call used them without a word and stored other losses than an uninterrupted call;
    now it warns, trains from the start, and stores the uninterrupted numbers."""
    study = load_study("xor5d", ["dataset='fashion_mnist'", "model='lenet'", "in_channels=1",
                                 "init_linear='glorot_uniform'", "init_bias='zeros'", "batch_size=50", "lr=0.001",
                                 "resets=['posRand']", f"data_root='{fake_fashion}'", "trials=1", "sizes=[100]",
                                 "epochs=4", "val_size=40", "conditions=['frozen_rand', 'fluid_rand']"])
    runs = plan(study)
    straight, resumed, epochs = _resumed_from_a_damaged_checkpoint(
        train_image_ensemble, runs, ensemble_checkpoint_file(tmp_path / "checkpoints", runs))
    assert epochs == 4 and resumed == straight
