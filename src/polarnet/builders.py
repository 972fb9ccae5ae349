"""How templates are made: random signs, signs of a model, SPIN proportions, rules.

Every builder returns ``{name: int8 tensor in {-1, 0, +1}}``;
:class:`polarnet.PolarityTemplate` wraps these.

A weight that can't carry signs is refused with its name: complex and sparse tensors
(every builder), and, where signs are read from values (:func:`signs_of`, the rules,
:func:`polarnet.transfer`), NaN weights (a NaN has no sign; ±inf has one) and weights on
the meta device (no values at all); :func:`checked_weight` is that one check. Seeds are
whole numbers in ``[0, 2**63 - 1]`` (:func:`check_seed`); anything else is refused, never
wrapped or truncated.
A tied weight (one tensor under two names) gets one sign pattern: when a list of names
gives both, the second copies the first. Rules (templates computed from a model by
expert knowledge) live in :data:`RULES`; add one with :func:`register_rule`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .layers import LayerSpec, aliases, named_tensors, select
from .proportions import Proportions, check_proportions, counts_from_proportions
from .registry import Registry

__all__ = ["random_signs", "signs_of", "signs_from_proportions", "RULES", "register_rule", "list_rules", "xor_sufficient",
           "check_seed", "checked_weight", "MAX_SEED"]

Signs = dict[str, Tensor]
Rule = Callable[..., Signs]
RULES: Registry[Rule] = Registry("template rule")


MAX_SEED = 2**63 - 1


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as an ``int``, refused unless it is a whole number in ``[0, 2**63 - 1]``.

    The range is what a signed 64-bit integer holds (a SQLite column, a tensor); a larger or
    negative seed is an error naming ``what``, not a silently wrapped one.

    Raises:
        ValueError: a bool, a fraction, a non-number, a negative or too large seed.

    Example:
        >>> check_seed(7)
        7
        >>> check_seed(2**70)
        Traceback (most recent call last):
        ...
        ValueError: seed must be a whole number in [0, 2**63 - 1], got 1180591620717411303424
    """
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and 0 <= int(seed) <= MAX_SEED:
        return int(seed)
    raise ValueError(f"{what} must be a whole number in [0, 2**63 - 1], got {seed!r}")


def _generator(seed: object) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(check_seed(seed))


def _weight(tensors: Mapping[str, Tensor], name: str) -> Tensor:
    """The tensor ``name``, refused when it can't carry signs (complex, sparse)."""
    t = tensors[name]
    if t.is_complex():
        raise ValueError(f"layer {name!r}: a complex tensor has no signs; leave it out with layers=[...] or a glob")
    if t.layout != torch.strided:
        raise ValueError(f"layer {name!r}: a {t.layout} tensor is not supported; pass a dense state dict "
                         f"(t.to_dense()) or leave it out with layers=[...]")
    return t


def _tied_to(source: nn.Module | Mapping[str, Tensor], names: list[str]) -> dict[str, str]:
    """``{alias: earlier selected name}`` for selected names that are the same tensor."""
    tied = aliases(source)
    first: dict[str, str] = {}
    out: dict[str, str] = {}
    for name in names:
        canonical = tied.get(name, name)
        if canonical in first:
            out[name] = first[canonical]
        else:
            first[canonical] = name
    return out


def random_signs(source: nn.Module | Mapping[str, Tensor], p_positive: float = 0.5, layers: LayerSpec = "all",
                 seed: int = 0, *, bias: bool = False) -> Signs:
    """RAND-Polarity: each sign +1 with probability ``p_positive``, else −1 (never 0).

    Raises:
        ValueError: ``p_positive`` outside [0, 1], or ``seed`` not a whole number in
            ``[0, 2**63 - 1]`` (:func:`check_seed`).

    Example:
        >>> s = random_signs(nn.Linear(100, 100), seed=0)
        >>> sorted(s["weight"].unique().tolist())
        [-1, 1]
    """
    if not 0.0 <= float(p_positive) <= 1.0:
        raise ValueError(f"p_positive must lie in [0, 1], got {p_positive}")
    g = _generator(seed)
    tensors = named_tensors(source)
    names = select(source, layers, bias=bias)
    tied = _tied_to(source, names)
    out: Signs = {}
    for name in names:
        if name in tied:
            out[name] = out[tied[name]].clone()
            continue
        draw = torch.rand(_weight(tensors, name).shape, generator=g) < p_positive
        out[name] = draw.to(torch.int8).mul_(2).sub_(1)
    return out


def signs_of(source: nn.Module | Mapping[str, Tensor], layers: LayerSpec = "all", *, bias: bool = False) -> Signs:
    """IN-Polarity: the signs of a model's (or state dict's) weights; an exact 0 gives 0.

    Raises:
        ValueError: a selected weight holds NaN (naming the layer and how many: a NaN has
            no sign; repair or drop it first), is on the meta device (no values), or is
            complex or sparse (see :func:`checked_weight`).

    Example:
        >>> lin = nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[0.3, -2.0]]))
        >>> signs_of(lin)["weight"].tolist()
        [[1, -1]]
    """
    tensors = named_tensors(source)
    return {name: _signs(name, tensors[name]) for name in select(source, layers, bias=bias)}


def checked_weight(name: str, w: Tensor) -> Tensor:
    """``w`` detached, on the CPU, when its values can give signs; else an error naming ``name``.

    The one check behind every builder that reads weight values (:func:`signs_of`, the
    rules, :func:`polarnet.transfer`): complex and sparse tensors, weights on the meta
    device (shapes without values) and NaN weights are refused; ±inf keeps its sign.

    Raises:
        ValueError: naming the layer, what is wrong (with the NaN count) and the fix.

    Example:
        >>> checked_weight("w", torch.tensor([1.0, -float("inf")])).tolist()
        [1.0, -inf]
        >>> checked_weight("w", torch.tensor([1.0, float("nan")]))
        Traceback (most recent call last):
        ...
        ValueError: layer 'w': 1 of 2 weights are NaN, and a NaN has no sign; repair the source (e.g. torch.nan_to_num) or leave the layer out with layers=[...]
    """
    w = _weight({name: w}, name).detach()
    if w.is_meta:
        raise ValueError(f"layer {name!r}: weights on the meta device have no values, so they have no signs; "
                         f"load or initialise them first (e.g. model.to_empty(device='cpu'), then load_state_dict)")
    if w.is_floating_point():
        nan = int(torch.isnan(w).sum())
        if nan:
            raise ValueError(f"layer {name!r}: {nan} of {w.numel()} weights are NaN, and a NaN has no sign; "
                             f"repair the source (e.g. torch.nan_to_num) or leave the layer out with layers=[...]")
    return w.cpu()


def _signs(name: str, w: Tensor) -> Tensor:
    return torch.sign(checked_weight(name, w)).to(dtype=torch.int8)


def signs_from_proportions(source: nn.Module | Mapping[str, Tensor],
                           proportions: Mapping[str, Proportions] | Proportions,
                           seed: int = 0, layers: LayerSpec = "all") -> Signs:
    """SPIN: a random sign pattern per layer with exactly the given proportions.

    Args:
        source: the model (or state dict) whose shapes the pattern takes.
        proportions: ``{name: (p0, p_neg, p_pos)}``, or one triple for every layer that
            ``layers`` selects.
        seed: seeds the random positions; a whole number in ``[0, 2**63 - 1]``.
        layers: used only when ``proportions`` is a single triple.

    Example:
        >>> s = signs_from_proportions(nn.Linear(10, 10), {"weight": (0.1, 0.3, 0.6)})
        >>> [(s["weight"] == v).sum().item() for v in (0, -1, 1)]
        [10, 30, 60]
    """
    g = _generator(seed)
    tensors = named_tensors(source)
    if isinstance(proportions, Mapping):
        table = {name: check_proportions(p, name) for name, p in proportions.items()}
        missing = [n for n in table if n not in tensors]
        if missing:
            raise ValueError(f"proportions name layers the model does not have: {missing}; model has {list(tensors)}")
    else:
        p = check_proportions(proportions)
        table = {name: p for name in select(source, layers)}
    tied = _tied_to(source, list(table))
    out: Signs = {}
    for name, p in table.items():
        if name in tied:
            if table[tied[name]] != p:
                raise ValueError(f"layers {tied[name]!r} and {name!r} are one tied weight but are given different "
                                 f"proportions {table[tied[name]]} and {p}; give one of the two names")
            out[name] = out[tied[name]].clone()
            continue
        shape = _weight(tensors, name).shape
        n = tensors[name].numel()
        n0, n_neg, _ = counts_from_proportions(p, n)
        flat = torch.ones(n, dtype=torch.int8)
        order = torch.randperm(n, generator=g)
        flat[order[:n0]] = 0
        flat[order[n0 : n0 + n_neg]] = -1
        out[name] = flat.view(shape)
    return out


def register_rule(name: str) -> Callable[[Rule], Rule]:
    """Register a template rule ``rule(model, **kwargs) -> {name: signs}``.

    Example:
        >>> @register_rule("all_positive_demo")
        ... def all_positive(model, **kw):
        ...     return {n: torch.ones_like(p, dtype=torch.int8) for n, p in model.named_parameters() if n.endswith("weight")}
        >>> "all_positive_demo" in list_rules()
        True
        >>> RULES.unregister("all_positive_demo")
    """
    return RULES.register(name)


def list_rules() -> list[str]:
    """Names of the registered template rules.

    Example:
        >>> "xor_sufficient" in list_rules()
        True
    """
    return RULES.names()


def _linear_weights(model: nn.Module) -> list[tuple[str, Tensor]]:
    return [(f"{m_name}.weight" if m_name else "weight", m.weight) for m_name, m in model.named_modules() if isinstance(m, nn.Linear)]


@register_rule("xor_sufficient")
def xor_sufficient(model: nn.Module, relevant: Sequence[int] = (0, 1), layers: Sequence[str] | None = None) -> Signs:
    """Sufficient-Polarity for XOR (Wang et al. §2): hidden unit j's output edge gets
    ``sign(w[j, a]) · sign(w[j, b])`` for the two relevant inputs ``a, b``.

    The hidden layer keeps the signs it has ("as-is"); the output layer's signs follow
    the rule, so every hidden unit is XOR-compatible (Lemma D.1). An input weight that is
    exactly 0 gives an output sign of 0.

    Args:
        model: a network whose first two ``nn.Linear`` layers are hidden and output
            (or name them with ``layers``).
        relevant: indices of the two task-relevant input dimensions.
        layers: ``[hidden_weight_name, output_weight_name]`` to override the default.

    Example:
        >>> net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1))
        >>> s = xor_sufficient(net)
        >>> w = net[0].weight
        >>> bool((s["2.weight"][0] == torch.sign(w[:, 0] * w[:, 1]).to(torch.int8)).all())
        True
    """
    if layers is not None:
        names = list(layers)
        params = dict(model.named_parameters())
        missing = [n for n in names if n not in params]
        if len(names) != 2 or missing:
            raise ValueError(f"xor_sufficient: layers must name the hidden and output weights; not found: {missing or names}")
        (h_name, hidden), (o_name, output) = [(n, params[n]) for n in names]
    else:
        linears = _linear_weights(model)
        if len(linears) < 2:
            raise ValueError("xor_sufficient needs a model with a hidden and an output nn.Linear layer; pass layers=[hidden, output] otherwise")
        (h_name, hidden), (o_name, output) = linears[0], linears[1]
    a, b = relevant
    if hidden.dim() != 2 or max(a, b) >= hidden.shape[1]:
        raise ValueError(f"xor_sufficient: hidden weight {h_name!r} of shape {tuple(hidden.shape)} has no input dims {a}, {b}")
    if output.dim() != 2 or output.shape[1] != hidden.shape[0]:
        raise ValueError(f"xor_sufficient: output weight {o_name!r} of shape {tuple(output.shape)} does not take the {hidden.shape[0]} hidden units")
    h_signs = _signs(h_name, hidden)
    unit = (h_signs[:, a] * h_signs[:, b]).to(torch.int8)
    return {h_name: h_signs, o_name: unit.expand(output.shape[0], -1).clone()}
