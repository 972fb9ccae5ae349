"""PolarityTemplate: one sign in {-1, 0, +1} per constrained weight, by parameter name."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import builders, fileformat
from .layers import LayerSpec, aliases, named_tensors
from .proportions import Proportions

__all__ = ["PolarityTemplate"]


def _as_signs(name: str, value: object) -> Tensor:
    # always a copy: a template must not change behind its back (and its ``version``)
    return fileformat.as_signs(value, name, copy=True)


class PolarityTemplate(MutableMapping[str, Tensor]):
    """A mapping ``parameter name → int8 tensor of signs in {-1, 0, +1}``.

    Every write is validated: exactly -1, 0 or +1 in the value's own dtype (so 0.5, NaN, a
    ``uint8`` 255, ``bool`` and complex tensors are refused; see
    :func:`polarnet.fileformat.as_signs`), and the shape when a layer is overwritten.
    ``version`` counts writes, so code that caches derived tensors (the Freeze-SGD
    enforcer) knows when to rebuild them.

    Reading a layer (``t[name]``, ``t.values()``, ``t.items()``) returns a **copy**: writing
    into it changes nothing. Edit a layer by assigning ``t[name] = ...``.

    Example:
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> t = PolarityTemplate.random(net, seed=0)
        >>> list(t)
        ['0.weight', '2.weight']
        >>> t.numel()
        48
        >>> t["0.weight"][0, 0] = 0    # a copy: the template is unchanged
        >>> t.counts()["0.weight"][0]
        0
    """

    def __init__(self, signs: Mapping[str, Tensor] | None = None, *, meta: Mapping[str, Any] | None = None) -> None:
        self._signs: dict[str, Tensor] = {}
        self.version = 0
        self.meta: dict[str, Any] = dict(meta or {})
        for name, value in (signs or {}).items():
            self[name] = value

    # -- mapping protocol --------------------------------------------------------
    def __getitem__(self, name: str) -> Tensor:
        # a copy (int8: 1 byte per weight), so an in-place edit can't bypass validation and
        # ``version``; polarnet's own hot paths read ``_signs`` directly
        return self._signs[name].clone()

    def __setitem__(self, name: str, value: Tensor) -> None:
        signs = _as_signs(name, value)
        old = self._signs.get(name)
        if old is not None and old.shape != signs.shape:
            raise ValueError(
                f"template layer {name!r}: new shape {tuple(signs.shape)} ≠ existing shape {tuple(old.shape)}; "
                f"delete the layer first to change its shape"
            )
        self._signs[name] = signs
        self.version += 1

    def __delitem__(self, name: str) -> None:
        del self._signs[name]
        self.version += 1

    def __iter__(self) -> Iterator[str]:
        return iter(self._signs)

    def __len__(self) -> int:
        return len(self._signs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return set(self) == set(other) and all(torch.equal(self._signs[k], other[k]) for k in self)

    def __repr__(self) -> str:
        return f"PolarityTemplate({len(self)} layers, {self.numel()} weights)"

    # -- builders ----------------------------------------------------------------
    @classmethod
    def random(cls, model: nn.Module | Mapping[str, Tensor], p_positive: float = 0.5, layers: LayerSpec = "all",
               seed: int = 0, *, bias: bool = False) -> PolarityTemplate:
        """RAND-Polarity: independent signs, +1 with probability ``p_positive``.

        Example:
            >>> t = PolarityTemplate.random(nn.Linear(3, 2), seed=1)
            >>> t["weight"].shape
            torch.Size([2, 3])
        """
        return cls(builders.random_signs(model, p_positive, layers, seed, bias=bias), meta={"source": "random", "seed": builders.check_seed(seed)})

    @classmethod
    def from_model(cls, source: nn.Module | Mapping[str, Tensor], layers: LayerSpec = "all", *,
                   bias: bool = False) -> PolarityTemplate:
        """IN-Polarity: the signs of a (pretrained) model's or state dict's weights.

        To put these signs on a model of another shape, use :func:`polarnet.transfer`.

        Example:
            >>> src = nn.Linear(3, 2)
            >>> t = PolarityTemplate.from_model(src.state_dict())
            >>> bool((t["weight"] == torch.sign(src.weight).to(torch.int8)).all())
            True
        """
        return cls(builders.signs_of(source, layers, bias=bias), meta={"source": "model"})

    @classmethod
    def from_proportions(cls, model: nn.Module | Mapping[str, Tensor],
                         proportions: Mapping[str, Proportions] | Proportions, seed: int = 0,
                         layers: LayerSpec = "all") -> PolarityTemplate:
        """SPIN: random positions with exactly ``round(p·N)`` zeros, negatives, positives per layer.

        Example:
            >>> t = PolarityTemplate.from_proportions(nn.Linear(10, 10), {"weight": (0.5, 0.25, 0.25)})
            >>> t.proportions()
            {'weight': (0.5, 0.25, 0.25)}
        """
        return cls(builders.signs_from_proportions(model, proportions, seed, layers), meta={"source": "proportions", "seed": builders.check_seed(seed)})

    @classmethod
    def from_rule(cls, model: nn.Module, rule: str, **kwargs: Any) -> PolarityTemplate:
        """A template computed by a registered rule (see :func:`polarnet.list_rules`).

        Example:
            >>> net = nn.Sequential(nn.Linear(5, 64), nn.ReLU(), nn.Linear(64, 1))
            >>> PolarityTemplate.from_rule(net, "xor_sufficient").numel()
            384
        """
        return cls(builders.RULES.get(rule)(model, **kwargs), meta={"source": f"rule:{rule}"})

    # -- queries -------------------------------------------------------------------
    def numel(self) -> int:
        """Number of weights the template constrains.

        Example:
            >>> PolarityTemplate({"w": torch.ones(2, 3), "b": torch.zeros(4)}).numel()
            10
        """
        return sum(t.numel() for t in self._signs.values())

    def counts(self) -> dict[str, tuple[int, int, int]]:
        """``{name: (zeros, negatives, positives)}``.

        Example:
            >>> PolarityTemplate({"w": torch.tensor([0, -1, 1, 1])}).counts()
            {'w': (1, 1, 2)}
        """
        out = {}
        for name, t in self._signs.items():
            neg, zero = int((t < 0).sum()), int((t == 0).sum())
            out[name] = (zero, neg, t.numel() - neg - zero)
        return out

    def proportions(self) -> dict[str, Proportions]:
        """The SPIN distribution: ``{name: (p0, p_neg, p_pos)}``.

        Example:
            >>> PolarityTemplate({"w": torch.tensor([0, -1, 1, 1])}).proportions()
            {'w': (0.25, 0.25, 0.5)}
        """
        return {name: (c[0] / max(1, sum(c)), c[1] / max(1, sum(c)), c[2] / max(1, sum(c))) for name, c in self.counts().items()}

    def check(self, model: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Check that every layer exists in ``model`` with the same shape; return those tensors.

        Tied weights (one tensor under two names, e.g. ``decoder.weight`` tied to
        ``embedding.weight``) are accepted under either name. When the template names one
        tensor twice, both entries must hold the same signs, and the tensor is returned once,
        under the first of its names in the template, so callers touch it once.

        Raises:
            ValueError: naming the missing layer, both shapes, a tied weight given two
                different sign patterns, or a weight that is complex or sparse.

        Example:
            >>> net = nn.Linear(3, 2)
            >>> sorted(PolarityTemplate.random(net).check(net))
            ['weight']
        """
        tensors = named_tensors(model)
        same = aliases(model)
        found: dict[str, Tensor] = {}
        first: dict[str, str] = {}  # the canonical model name -> first template name for it
        for name, signs in self._signs.items():
            if name not in tensors:
                raise ValueError(f"template layer {name!r} is not a parameter of the model; "
                                 f"model has: {', '.join(list(tensors)[:8])}{'…' if len(tensors) > 8 else ''}")
            w = tensors[name]
            if tuple(w.shape) != tuple(signs.shape):
                raise ValueError(f"layer {name!r}: template shape {tuple(signs.shape)} ≠ weight shape {tuple(w.shape)}")
            if w.is_complex() or w.layout != torch.strided:
                kind = "complex" if w.is_complex() else str(w.layout)
                raise ValueError(f"layer {name!r}: the weight is a {kind} tensor, which has no signs to keep; "
                                 f"leave it out of the template")
            canonical = same.get(name, name)
            if canonical in first:
                other = first[canonical]
                if not torch.equal(self._signs[other], signs):
                    raise ValueError(f"layers {other!r} and {name!r} are one tied weight, but the template gives them "
                                     f"different signs; keep one of the two names or give both the same signs")
                continue
            first[canonical] = name
            found[name] = w
        return found

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The template packed for a checkpoint: 1 bit per weight (2 where a layer holds zeros),
        as uint8 tensors that ``torch.load(weights_only=True)`` reads.

        Example:
            >>> t = PolarityTemplate.random(nn.Linear(8, 8), seed=0)
            >>> state = t.state_dict()
            >>> state["layers"]["weight"]["data"].numel()   # 64 weights, 8 bytes
            8
            >>> PolarityTemplate.from_state_dict(state) == t
            True
        """
        layers = {}
        for name, signs in self._signs.items():
            bits, data = fileformat.encode(signs, name)
            layers[name] = {"shape": list(signs.shape), "bits": bits,
                            "data": torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else
                            torch.zeros(0, dtype=torch.uint8)}
        return {"layers": layers, "meta": json.dumps(self.meta, default=str)}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> PolarityTemplate:
        """Inverse of :meth:`state_dict`.

        Raises:
            ValueError: ``state`` is not a packed template (naming what is wrong).

        Example:
            >>> PolarityTemplate.from_state_dict({"layers": {}, "meta": "{}"})
            PolarityTemplate(0 layers, 0 weights)
        """
        if not isinstance(state, Mapping) or not isinstance(state.get("layers"), Mapping):
            raise ValueError(f"not a packed template (PolarityTemplate.state_dict()): expected a mapping with "
                             f"'layers', got {type(state).__name__}")
        signs = {}
        for name, layer in state["layers"].items():
            try:
                data = layer["data"]
                payload = data.cpu().numpy().tobytes() if isinstance(data, Tensor) else bytes(data)
                signs[name] = fileformat.decode(int(layer["bits"]), payload, tuple(int(n) for n in layer["shape"]))
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"packed template layer {name!r} is damaged: {type(e).__name__}: {e}") from None
        meta = state.get("meta") or "{}"
        return cls(signs, meta=json.loads(meta) if isinstance(meta, str) else meta)

    # -- files -----------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the template in polarnet's compact format (see :mod:`polarnet.fileformat`).

        Example:
            >>> import tempfile, os
            >>> t = PolarityTemplate.random(nn.Linear(8, 8))
            >>> f = t.save(os.path.join(tempfile.mkdtemp(), "t.plt"))
            >>> PolarityTemplate.load(f) == t
            True
        """
        return fileformat.write_signs(self._signs, path, self.meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PolarityTemplate:
        """Read a template file.

        Raises:
            polarnet.TemplateFileError: the file is truncated, corrupted, inconsistent, of a
                newer version, or not a regular file (a directory, FIFO, device).
            FileNotFoundError: there is no such file.

        Example:
            >>> import tempfile
            >>> PolarityTemplate.load(tempfile.mkdtemp())
            Traceback (most recent call last):
            ...
            polarnet.fileformat.TemplateFileError: ...: is a directory, not a template file
        """
        signs, meta = fileformat.read_signs(path)
        return cls(signs, meta=meta)
