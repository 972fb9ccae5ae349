"""Checkpoints of training in progress: one file format and one writing policy for runs trained
one at a time, image ensembles and XOR ensembles.

A checkpoint is a ``torch.save`` archive written atomically (a temporary file beside it, then a
rename): a process killed at any instant leaves the previous checkpoint or the new one, never
half of one. Every record of the archive (the pickled structure, each tensor's bytes) carries a
CRC-32 of its bytes. ``torch.load`` doesn't check them, so a file damaged on disk (bytes flipped
inside the tensor data) would load, and training would go on from wrong numbers; :meth:`Checkpoint.read`
checks every record first and treats a mismatch as it treats a truncated or foreign file: one
warning, and training starts from the beginning.

When to write (:meth:`Checkpoint.after_epoch`): after the first epoch, then whenever the epochs
since the last write took at least ``1 / overhead`` times as long as that write did, so writing
costs at most about ``overhead`` of the training time, whatever the size of the state and the
length of an epoch (tiny XOR epochs are written every few dozen epochs, a 0.7 GB AlexNet state
every few epochs); never after the last epoch (its result follows at once).
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from ..fileformat import atomic_write, stale_temporaries
from .plan import RunSpec

__all__ = ["Checkpoint", "ensemble_checkpoint_file"]


def ensemble_checkpoint_file(directory: str | os.PathLike[str], specs: Sequence[RunSpec]) -> Path:
    """Where the checkpoint of an ensemble of these runs (image or XOR) lives in a folder of
    checkpoints: named by a hash of its runs' keys (in any order), beside the runs' own
    ``<key>.pt`` files.

    Example:
        >>> from .config import load_study
        >>> from .plan import plan
        >>> runs = plan(load_study("xor5d", ["trials=1", "sizes=[8]"]))
        >>> path = ensemble_checkpoint_file("ckpt", runs)
        >>> path.name.startswith("ensemble-") and path == ensemble_checkpoint_file("ckpt", runs[::-1])
        True
    """
    digest = hashlib.sha256(" ".join(sorted(s.key for s in specs)).encode()).hexdigest()[:24]
    return Path(directory) / f"ensemble-{digest}.pt"


@contextmanager
def _crc32_written() -> Iterator[None]:
    """``torch.save`` with every record's CRC-32, even where the user turned them off
    (``torch.serialization.set_crc32_options``, torch 2.6+; always written before)."""
    get = getattr(torch.serialization, "get_crc32_options", None)
    if get is None or get():
        yield
        return
    torch.serialization.set_crc32_options(True)
    try:
        yield
    finally:
        torch.serialization.set_crc32_options(False)


def _verified(path: Path) -> None:
    """Raise ``ValueError`` unless every record of the archive at ``path`` matches its CRC-32."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError) as e:  # truncated, or not an archive at all
        raise ValueError(f"not a whole checkpoint archive: {e}") from None
    if bad is not None:
        raise ValueError(f"record {bad!r} fails its CRC-32 check: the file is damaged")


class Checkpoint:
    """The checkpoint file of one run or one ensemble: reads it back verified, and writes it
    after epochs at a bounded cost (see the module's notes).

    Args:
        path: the file.
        overhead: the share of training time that writing may take; ``float("inf")`` writes
            after every epoch but the last.

    Example:
        >>> import tempfile
        >>> ckpt = Checkpoint(Path(tempfile.mkdtemp()) / "run.pt")
        >>> ckpt.after_epoch(lambda: {"epoch": 1}, last=False)  # the first epoch: always written
        True
        >>> ckpt.read(lambda state: None, "run x")
        {'epoch': 1}
    """

    def __init__(self, path: str | os.PathLike[str], overhead: float = 0.1) -> None:
        if not overhead > 0:
            raise ValueError(f"checkpoint_overhead must be > 0, got {overhead!r}")
        self.path, self.overhead = Path(path), overhead
        self.since, self.cost = time.perf_counter(), 0.0

    def read(self, check: Callable[[dict[str, Any]], None], what: str) -> dict[str, Any] | None:
        """The saved state, or ``None``: no file, or an unusable one (with one ``RuntimeWarning``
        naming the file, why, and that ``what`` trains from the start).

        Unusable: a record whose bytes don't match its CRC-32 (damaged on disk), a truncated or
        foreign file, or a state that ``check(state)`` refuses by raising (another run's, another
        format). Temporary files of writes that a kill cut short are deleted first.
        """
        for stale in stale_temporaries(self.path):
            stale.unlink(missing_ok=True)
        if not self.path.exists():
            return None
        try:
            _verified(self.path)
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError(f"it holds a {type(state).__name__}, not a checkpoint's dict")
            check(state)
            return state
        except Exception as e:  # a torn, damaged or foreign file must never stop training
            warnings.warn(f"checkpoint {self.path} is unusable ({type(e).__name__}: {e}); training {what} "
                          f"from the start", RuntimeWarning, stacklevel=3)
            return None

    def after_epoch(self, state: Callable[[], dict[str, Any]], last: bool) -> bool:
        """Write ``state()`` if it is time to (never when ``last``); returns whether it wrote."""
        now = time.perf_counter()
        if last or (now - self.since) * self.overhead < self.cost:
            return False
        self.write(state())
        self.since = time.perf_counter()
        self.cost = self.since - now
        return True

    def write(self, state: dict[str, Any]) -> None:
        """Write ``state`` now, atomically, each record with its CRC-32.

        No fsync: what must survive is the process being killed, and the page cache does; a
        file torn by a power cut fails its check and is ignored (training starts again).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _crc32_written():
            atomic_write(self.path, lambda f: torch.save(state, f), "checkpoint", ValueError)
