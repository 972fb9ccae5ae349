"""Sharded weights (``torch.distributed`` DTensors, e.g. FSDP2's ``fully_shard``): local views
and the template rows that go with them.

FSDP2 keeps each parameter as a DTensor: every rank holds one block of it (``Shard(0)``: a
block of rows), and ``.shape`` is the *global* shape. Freeze-SGD enforces on each rank's own
block, in place, without ever gathering the full weight:

* :func:`local_view` is the rank's block of a parameter (its storage: writes land in the
  parameter);
* :func:`shard_box` says where that block lies in the global tensor (a :class:`ShardBox`);
* :func:`local_signs` cuts the same block out of a template layer (a view, no copy);
* :meth:`ShardBox.positions` / :meth:`ShardBox.global_index` give each local entry's
  row-major position in the *global* tensor, which keys its random reset
  (:mod:`polarnet.keyed`): a sharded run resets the same weights to the same values as an
  unsharded one;
* :func:`global_count` sums a per-entry count over all ranks (a collective for a DTensor).

Plain tensors pass through all of them unchanged (a box covering the whole tensor), so code
written with them runs in a single process as well. Importing this module does not import
``torch.distributed.tensor`` (about a second); a tensor can't be a DTensor before that is
imported anyway.

Only ``Shard(d)`` and ``Replicate()`` placements (any device mesh: FSDP2's ``Shard(0)``, HSDP's
``(Replicate(), Shard(0))``, or tensor-parallel ``Shard(1)``) describe a block; ``Partial``
(an unreduced sum is not a weight) and ``_StridedShard`` (FSDP2 over TP: not a contiguous
block) are refused with a :class:`ValueError`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["ShardBox", "is_sharded", "local_view", "shard_box", "local_signs", "global_count"]


def _dtensor_class() -> type | None:
    module = sys.modules.get("torch.distributed.tensor")
    return getattr(module, "DTensor", None) if module is not None else None


def is_sharded(t: Tensor) -> bool:
    """Whether ``t`` is a DTensor (a tensor distributed over a device mesh).

    Example:
        >>> is_sharded(torch.zeros(3))
        False
    """
    cls = _dtensor_class()
    return cls is not None and isinstance(t, cls)


def local_view(t: Tensor) -> Tensor:
    """This rank's part of ``t``: a DTensor's local tensor (the same storage, so writing into it
    changes the parameter), or ``t`` itself. Never gathers.

    Example:
        >>> w = torch.zeros(2, 3)
        >>> local_view(w) is w
        True
    """
    if is_sharded(t):
        with torch.no_grad():
            return t.to_local()  # type: ignore[attr-defined]
    return t


@dataclass(frozen=True)
class ShardBox:
    """Where a rank's block lies in a global tensor: ``global[offset : offset + local_shape]``.

    Attributes:
        global_shape: the whole tensor's shape.
        local_shape: the block's shape (0 along a dimension when this rank holds nothing).
        offset: the block's first index along each dimension.

    Example:
        >>> box = ShardBox(global_shape=(7, 4), local_shape=(3, 4), offset=(4, 0))  # rank 1 of 2
        >>> box.whole, box.slices
        (False, (slice(4, 7, None), slice(0, 4, None)))
        >>> box.positions().tolist()[0]             # global row 4 starts at position 16
        [16, 17, 18, 19]
        >>> box.global_index(torch.tensor([0, 5])).tolist()
        [16, 21]
    """

    global_shape: tuple[int, ...]
    local_shape: tuple[int, ...]
    offset: tuple[int, ...]

    @property
    def whole(self) -> bool:
        """Whether the block is the whole tensor (unsharded, or replicated)."""
        return self.local_shape == self.global_shape and not any(self.offset)

    @property
    def slices(self) -> tuple[slice, ...]:
        """Index the global tensor with these to get the block."""
        return tuple(slice(o, o + n) for o, n in zip(self.offset, self.local_shape))

    def _strides(self) -> list[int]:
        strides = [1] * len(self.global_shape)
        for d in range(len(self.global_shape) - 2, -1, -1):
            strides[d] = strides[d + 1] * self.global_shape[d + 1]
        return strides

    def positions(self, device: torch.device | str | None = None) -> Tensor:
        """Each local entry's row-major index in the global tensor (int64, ``local_shape``).

        A sum of one ``arange`` per dimension, broadcast: nothing is read back to the host,
        so it runs inside ``torch.compile`` and CUDA-graph capture.
        """
        positions = torch.zeros((), dtype=torch.int64, device=device)
        strides = self._strides()
        for d, (n, o) in enumerate(zip(self.local_shape, self.offset)):
            axis = torch.arange(o, o + n, dtype=torch.int64, device=device) * strides[d]
            positions = positions.unsqueeze(-1) + axis if d else axis
        return positions.reshape(self.local_shape)

    def global_index(self, local: Tensor) -> Tensor:
        """Map row-major indices within the block to row-major indices in the global tensor."""
        if self.whole:
            return local
        strides = self._strides()
        if self.local_shape[1:] == self.global_shape[1:]:  # a block of whole rows: a shift
            return local + self.offset[0] * strides[0] if self.local_shape else local
        coords = torch.unravel_index(local, self.local_shape)
        return sum(((c + o) * s for c, o, s in zip(coords, self.offset, strides)),
                   torch.zeros_like(local))


def shard_box(t: Tensor) -> ShardBox:
    """Where this rank's block of ``t`` lies in the global tensor (the whole box for a plain
    tensor), from the DTensor's device mesh and placements
    (``compute_local_shape_and_global_offset``, as distributed checkpoints use).

    Raises:
        ValueError: a placement that is not ``Shard(d)`` or ``Replicate()`` (naming it).

    Example:
        >>> shard_box(torch.zeros(2, 3))
        ShardBox(global_shape=(2, 3), local_shape=(2, 3), offset=(0, 0))
    """
    shape = tuple(int(n) for n in t.shape)
    if not is_sharded(t):
        return ShardBox(shape, shape, (0,) * len(shape))
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    placements = tuple(t.placements)  # type: ignore[attr-defined]
    odd = [p for p in placements if type(p) not in (Shard, Replicate)]
    if odd:
        raise ValueError(f"a DTensor placed as {placements} is not a block of rows or columns ({odd[0]!r}); "
                         f"polarnet enforces on Shard(d) and Replicate() placements only: redistribute the weight "
                         f"(e.g. FSDP2 without tensor parallelism) or enforce on its full_tensor()")
    local_shape, offset = compute_local_shape_and_global_offset(shape, t.device_mesh, placements)  # type: ignore[attr-defined]
    local = tuple(int(n) for n in t.to_local().shape)  # type: ignore[attr-defined]
    if tuple(local_shape) != local:
        raise ValueError(f"a DTensor's local tensor has shape {local}, but its placements {placements} give "
                         f"{tuple(local_shape)}: an uneven layout polarnet doesn't know how to place")
    return ShardBox(shape, local, tuple(int(o) for o in offset) or (0,) * len(shape))


def local_signs(signs: Tensor, t: Tensor) -> Tensor:
    """The template entries of ``t``'s local block: ``signs`` (global shape) cut like the weight
    (a view, no copy; ``signs`` itself for a plain tensor).

    Example:
        >>> signs = torch.tensor([[1, -1], [-1, 1]], dtype=torch.int8)
        >>> local_signs(signs, torch.zeros(2, 2)) is signs
        True
    """
    box = shard_box(t)
    if tuple(signs.shape) != box.global_shape:
        raise ValueError(f"template shape {tuple(signs.shape)} ≠ weight shape {box.global_shape}")
    return signs if box.whole else signs[box.slices]


def global_count(mask: Tensor, like: Tensor) -> int:
    """How many entries of ``mask`` (a bool or int tensor of ``like``'s *local* shape) are set,
    over the whole tensor: for a DTensor, summed across the ranks that hold distinct blocks
    (a collective, so every rank must call it; replicas are counted once), else ``mask.sum()``.

    Example:
        >>> w = torch.tensor([0.5, -1.0, 2.0])
        >>> global_count(w < 0, w)
        1
    """
    if not is_sharded(like):
        return int(mask.sum())
    from torch.distributed.tensor import DTensor

    spread: Any = DTensor.from_local(mask.to(torch.int64), like.device_mesh, like.placements,  # type: ignore[attr-defined]
                                     run_check=False, shape=like.shape, stride=like.stride())
    return int(spread.sum().full_tensor())
