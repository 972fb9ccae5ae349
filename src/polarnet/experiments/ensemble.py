"""Train many small MLP runs at once, numerically as if one by one (to rounding).

The XOR networks (d → H → 1) are far too small to keep a CPU or GPU busy alone. Here every
run of a chunk is a member of an ensemble: parameters are stacked along a leading member
axis, forward and backward are batched matrix products, and Adam and Freeze-SGD act on all
members at once. Each member keeps its own data order, learning rate, step count, template,
learner, reset rule and (keyed) reset randomness, so its numbers agree with those of
:func:`polarnet.experiments.trainer.train_run` to floating-point rounding (batched products
add in another order: about 1e-7 apart in float32, not bit for bit), and don't depend on
which other runs share the ensemble.

Members are sorted by training-set size, largest first, so at batch ``s`` of an epoch the
members that still have a batch are a prefix: the step works on views, never on masked
copies. A member's last batch may be short; its loss is averaged over its real samples.

Learners (:mod:`polarnet.learners`) mix in one ensemble, member by member, following their
:class:`~polarnet.learners.Stacked` recipe: ``reparam-<f>`` members keep ``V`` in the stack
(the forward pass sees ``W = T ⊙ f(V)``), ``eg`` members take Adam's multiplicative step on
their constrained weights, ``project`` members are projected after the step, and
``freeze_sgd`` members reset with their rule. A learner without a recipe trains one run at a
time.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .. import native
from ..enforcement import DENSE_RULES, dense_enforce_, project_, template_code
from ..init import align
from ..learners import LEARNERS, MAGNITUDE_FNS, SignedMagnitude, Stacked, signed_magnitude, signed_magnitude_grad
from .checkpoint import Checkpoint
from .datasets import binary_correct, binary_loss
from .plan import RunSpec
from .results import EpochRecord, RunResult, magnitude_quantiles
from .stacked import adam_
from .trainer import prepare_model, run_data

__all__ = ["train_ensemble", "supports"]

_LAYERS = ("0.weight", "2.weight")
#: bumped whenever what an XOR ensemble checkpoint holds changes; a file of another version is ignored
CHECKPOINT_FORMAT = 1


def supports(spec: RunSpec) -> bool:
    """Whether the ensemble can train this run: the one-hidden-layer MLP on a binary task,
    without per-epoch template swaps, in the study's own dtype (no ``amp``, which the ensemble
    does not implement, and no ``channels_last``; :meth:`Study.validate` refuses both on XOR),
    with a built-in reset rule (a rule of your own may not act entry by entry: such runs train
    one at a time, on :class:`~polarnet.freeze.Enforcer`'s sparse path), and, when frozen, a
    learner whose :class:`~polarnet.learners.Stacked` recipe the ensemble knows.

    Example:
        >>> from .config import load_study
        >>> from .plan import plan
        >>> supports(plan(load_study("xor5d", ["trials=1", "sizes=[8]"]))[0])
        True
        >>> runs = plan(load_study("xor5d", ["trials=1", "sizes=[8]", "learners=['eg', 'reparam-exp']"]))
        >>> all(supports(r) for r in runs)
        True
    """
    study = spec.study
    return study.model == "mlp" and study.dataset == "xor" and not spec.condition.swap and study.amp is not True \
        and study.channels_last is not True and spec.reset in DENSE_RULES + ("none",) \
        and (not spec.condition.frozen or _known(LEARNERS.get(spec.condition.learner).stacked))


def _known(recipe: Stacked | None) -> bool:
    """Whether the ensemble implements a learner's recipe: the weights themselves or a known
    ``f`` of ``W = T ⊙ f(V)``, Adam's additive or multiplicative update, then a reset, a
    projection or nothing (on the weights themselves: ``V`` needs nothing after the step)."""
    if recipe is None or recipe.update not in ("gd", "eg") or recipe.after not in ("reset", "project", None):
        return False
    return recipe.weights is None or (recipe.weights in MAGNITUDE_FNS and recipe.after is None)


class _Members(NamedTuple):
    """Some members of an ensemble: a bool mask shaped ``(M, 1, 1)`` and, on the host, the
    rows ``lo:hi`` that hold them all (the work is done on those rows only)."""

    mask: Tensor
    lo: int
    hi: int

    def rows(self, A: int) -> slice | None:
        """The rows among the first ``A`` members worth working on; ``None`` if none."""
        return slice(self.lo, min(self.hi, A)) if self.lo < A else None


class _Layer:
    """Template and learner state of one weight layer for all members.

    The stack holds what each member's optimizer steps: ``V`` for the members in
    ``reparam`` (``W = T ⊙ f(V)``), the weight itself for the others. Each group of members
    (``reset``, ``project``, ``eg``, ``reparam[f]``) is ``None`` when it is empty.
    """

    def __init__(self, signs: Tensor, constrained: Tensor, index: Tensor, recipes: Sequence[Stacked]) -> None:
        self.code = template_code(signs)  # int8; 0 where T == 0 or the member is unconstrained
        self.index = index  # (M,) position of this layer in each member's template (keyed RNG)
        on = constrained.tolist()

        def members(test: Callable[[Stacked], bool]) -> _Members | None:
            chosen = [m for m, r in enumerate(recipes) if on[m] and test(r)]
            if not chosen:
                return None
            mask = torch.zeros(len(recipes), dtype=torch.bool)
            mask[chosen] = True
            return _Members(mask.view(-1, 1, 1).to(constrained.device), chosen[0], chosen[-1] + 1)

        self.reset = members(lambda r: r.after == "reset")  # Freeze-SGD (Fluid members are unconstrained)
        self.project = members(lambda r: r.after == "project")
        self.eg = members(lambda r: r.update == "eg")  # Adam's multiplicative step
        self.reparam = {fn: group for fn in MAGNITUDE_FNS if (group := members(lambda r: r.weights == fn)) is not None}

    def to_trained(self, w: Tensor) -> Tensor:
        """The stack the optimizer steps, from the aligned weights: ``V`` for the reparam
        members (as :class:`~polarnet.learners.SignedMagnitude` makes it), ``w`` elsewhere."""
        for fn, group in self.reparam.items():
            w = torch.where(group.mask, SignedMagnitude(self.code, fn).right_inverse(w), w)
        return w

    def weight(self, v: Tensor, A: int) -> Tensor:
        """The weights the first ``A`` members' forward pass sees: ``T ⊙ f(V)`` for reparam
        members (the parametrization's expression, so the same rounding), the stack elsewhere."""
        w = v[:A]
        for fn, group in self.reparam.items():
            rows = group.rows(A)
            if rows is None:
                continue
            if w.data_ptr() == v.data_ptr():  # still the stack itself: write into a copy
                w = w.clone()
            # f runs on the rows' every member and where() keeps the reparam ones: an inf or NaN
            # of f on another member's weight never reaches it
            w[rows] = torch.where(group.mask[rows], signed_magnitude(v[rows], self.code[rows], fn), w[rows])
        return w

    def trained_grad(self, v: Tensor, grad: Tensor, A: int) -> Tensor:
        """The gradient with respect to the stack from the one with respect to the weights
        (changed in place): for reparam members through ``T ⊙ f(V)`` by :func:`~polarnet.learners.signed_magnitude_grad` (autograd's numbers, the
        derivative torch takes for a single run), unchanged elsewhere."""
        for fn, group in self.reparam.items():
            rows = group.rows(A)
            if rows is None:
                continue
            found = signed_magnitude_grad(grad[rows], v[rows], self.code[rows], fn)  # autograd's numbers, without it
            grad[rows] = torch.where(group.mask[rows], found, grad[rows])
        return grad

    def multiplicative(self, A: int) -> Tensor | bool:
        """``adam_``'s ``multiplicative`` for the first ``A`` members: the eg members' mask, or
        ``False`` when there are none (the plain additive step)."""
        return False if self.eg is None or self.eg.rows(A) is None else self.eg.mask[:A].view(-1)


def _stack(models: Sequence[torch.nn.Module], name: str, device: torch.device) -> Tensor:
    return torch.stack([m.get_parameter(name).detach() for m in models]).to(device)


@torch.no_grad()
def _evaluate(w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, x: Tensor, y: Tensor, chunk: int = 8) -> tuple[Tensor, Tensor]:
    """Validation loss and accuracy per member.

    On the CPU in float32, where the engines' kernels run (AVX-512:
    :func:`polarnet.native.engine_kernels`), the logits come from :func:`polarnet.native.mlp_logits`
    (each member's hidden units in registers: ~8x faster; the validation pass is most of an XOR
    study's time), 1024 members at a time. Otherwise a few members at a time keep the
    (members × samples × hidden) activations in cache: 10× faster than one big product on a CPU.
    """
    if x.device.type == "cpu" and w1.dtype == torch.float32 and native.engine_kernels():
        chunk = 1024
        logits = lambda s, c: native.mlp_logits(x, w1[s : s + c], b1[s : s + c], w2[s : s + c], b2[s : s + c])  # noqa: E731
    else:
        n, d = x.shape

        def logits(s: int, c: int) -> Tensor:
            h = torch.baddbmm(b1[s : s + c, None, :], x.expand(c, n, d), w1[s : s + c].transpose(1, 2)).relu_()
            return torch.baddbmm(b2[s : s + c, :, None], w2[s : s + c], h.transpose(1, 2)).squeeze(1)

    losses, accs = [], []
    for s in range(0, w1.shape[0], chunk):
        z = logits(s, min(chunk, w1.shape[0] - s))
        target = y.expand_as(z)
        losses.append(binary_loss(z, target).mean(1))
        accs.append(binary_correct(z, target).mean(1))
    return torch.cat(losses), torch.cat(accs)


def train_ensemble(specs: Sequence[RunSpec], device: str | torch.device = "cpu", keep_weights: bool = False,
                   on_epoch: Callable[[float], None] | None = None, checkpoint: str | os.PathLike[str] | None = None,
                   *, checkpoint_overhead: float = 0.02) -> list[RunResult]:
    """Train runs that share a study, a hidden size and a model as one ensemble.

    With ``keep_weights``, each run's final weights (as a ``state_dict`` of the MLP, on the
    CPU) are in ``result.extra["weights"]``; ``on_epoch(len(specs) / epochs)`` is called after
    every epoch (progress reporting).

    With ``checkpoint`` (a file, e.g. :func:`~polarnet.experiments.checkpoint.ensemble_checkpoint_file`),
    the ensemble's state (stacked weights, Adam's moments and step counts, the batch-order
    generators, every epoch's numbers so far) is written there after epochs, at most
    ``checkpoint_overhead`` of the training time (:class:`~polarnet.experiments.checkpoint.Checkpoint`:
    XOR epochs take milliseconds, so every few dozen of them); if the file holds the state of
    these runs, training continues from it with exactly the numbers of an uninterrupted call.
    An unusable file (damaged, torn, another ensemble's) is ignored with a warning. The file is
    left in place: delete it once the results are safe.

    Example:
        >>> from .config import load_study
        >>> from .plan import plan
        >>> runs = plan(load_study("xor5d", ["trials=2", "epochs=2", "sizes=[8, 40]"]))
        >>> [r.status for r in train_ensemble(runs)] == ["done"] * len(runs)
        True
    """
    start = time.perf_counter()
    device = torch.device(device)
    given = [s.key for s in specs]
    specs = sorted(specs, key=lambda s: -s.n_train)
    first = specs[0]
    study = first.study
    if any(s.study != study or s.hidden != first.hidden or not supports(s) for s in specs):
        raise ValueError("an ensemble needs runs of one study and one hidden size, on the MLP/XOR task")
    dtype = getattr(torch, study.dtype)
    # a batch larger than every training set is the full batch; capping it keeps the (members ×
    # batches·B) index tables as small as the data
    M, B = len(specs), min(study.batch_size, max(s.n_train for s in specs))

    # one pool per data seed (trials have their own data with data_per_trial), stacked end to
    # end; a member's batch indices are shifted to its pool
    pools: dict[int, int] = {}
    parts = []
    for s in specs:
        if s.data_seed not in pools:
            pools[s.data_seed] = sum(len(p.x) for p in parts)
            parts.append(run_data(s))
    x_pool = torch.cat([p.x for p in parts]).to(device)
    y_pool = torch.cat([p.y for p in parts]).to(device)
    pool_offset = torch.tensor([pools[s.data_seed] for s in specs], device=device)
    x_val, y_val = parts[0].x_val.to(device), parts[0].y_val.to(device)

    prepared = [prepare_model(s) for s in specs]
    models = [m for m, _ in prepared]
    params = {n: _stack(models, n, device) for n in ("0.weight", "0.bias", "2.weight", "2.bias")}
    acc_before = _evaluate(params["0.weight"], params["0.bias"], params["2.weight"], params["2.bias"], x_val, y_val)[1]
    for model, template in prepared:
        if template is not None:
            align(model, template)
    params = {n: _stack(models, n, device) for n in params}
    w1, b1, w2, b2 = params["0.weight"], params["0.bias"], params["2.weight"], params["2.bias"]
    acc_after = _evaluate(w1, b1, w2, b2, x_val, y_val)[1]

    # a member's learner: its condition's when it trains under a template (as train_run picks it)
    recipes = [LEARNERS.get(s.condition.learner if s.condition.frozen and t is not None else "freeze_sgd").stacked
               for s, (_, t) in zip(specs, prepared)]
    layers = {}
    for name, w in (("0.weight", w1), ("2.weight", w2)):
        signs = torch.zeros_like(w)
        constrained = torch.zeros(M, dtype=torch.bool)
        index = torch.zeros(M, dtype=torch.int64)
        for m, (spec, (_, template)) in enumerate(zip(specs, prepared)):
            if spec.condition.frozen and template is not None and name in template:
                signs[m] = template[name].to(device=device, dtype=dtype)
                constrained[m] = True
                index[m] = list(template).index(name)
        layers[name] = _Layer(signs, constrained.to(device), index.to(device), recipes)  # type: ignore[arg-type]
    if any(s.condition.frozen and t is not None and set(t) - set(_LAYERS) for s, (_, t) in zip(specs, prepared)):
        raise ValueError("the ensemble constrains only the MLP's weights; use vectorize=false for bias templates")

    rule_names = sorted({s.reset for s in specs})
    rule_of = torch.tensor([rule_names.index(s.reset) for s in specs], device=device)
    lr = torch.tensor([s.lr for s in specs], dtype=torch.float64, device=device)
    reset_seed = torch.tensor([s.reset_seed for s in specs], dtype=torch.int64, device=device)
    steps = torch.zeros(M, dtype=torch.int64, device=device)
    n_train = torch.tensor([s.n_train for s in specs], device=device)
    n_batches = [math.ceil(s.n_train / B) for s in specs]
    state = {n: (torch.zeros_like(p), torch.zeros_like(p)) for n, p in params.items()}
    # one batch order per (trial, size), shared by its conditions; members look theirs up
    order_keys = sorted({(s.order_seed, s.n_train) for s in specs}, key=lambda k: (-k[1], k[0]))
    orders = {k: torch.Generator().manual_seed(k[0]) for k in order_keys}
    order_of = torch.tensor([order_keys.index((s.order_seed, s.n_train)) for s in specs], device=device)
    width = max(n_batches) * B
    valid = (torch.arange(width, device=device)[None, :] < n_train[:, None]).to(dtype)

    results = [RunResult(s.key, "done", acc_before_align=float(acc_before[m]), acc_after_align=float(acc_after[m]),
                         device=str(device)) for m, s in enumerate(specs)]
    quantiles = {name: magnitude_quantiles(params[name]) for name in _LAYERS}
    for m, r in enumerate(results):
        r.extra["init_magnitudes"] = {name: q[m] for name, q in quantiles.items()}
        spec, template = specs[m], prepared[m][1]
        if spec.condition.frozen and template is not None:
            r.extra["constrained"] = template.numel()  # for diagnostics: resets per constrained weight
    alive = [True] * M
    # the signs before training are the aligned weights' (a single run's tracker starts before
    # its learner attaches)
    prev_signs = {n: torch.sign(params[n]) for n in _LAYERS}
    for name in _LAYERS:  # reparam members: the stack holds V from here on
        params[name].copy_(layers[name].to_trained(params[name]))

    keys = [s.key for s in specs]
    generators = [orders[k] for k in order_keys]
    history: list[Tensor] = []  # per epoch, the members' numbers (see _record), on the host
    walls: list[float] = []
    spent = 0.0  # seconds of the calls before a checkpoint
    saver = Checkpoint(checkpoint, checkpoint_overhead) if checkpoint is not None else None
    saved = saver.read(lambda s: _check(s, keys, params, study.epochs), "its runs") if saver is not None else None
    if saved is not None:
        for name, p in params.items():
            p.copy_(saved["params"][name])
            state[name][0].copy_(saved["moments"][name][0])
            state[name][1].copy_(saved["moments"][name][1])
        steps.copy_(saved["steps"])
        for g, g_state in zip(generators, saved["orders"]):
            g.set_state(g_state)
        history, walls, spent = list(saved["history"].unbind()), list(saved["walls"]), float(saved["seconds"])
        for epoch, (row, wall) in enumerate(zip(history, walls), 1):
            _record(results, alive, epoch, row, wall)
        prev_signs = {n: torch.sign(layers[n].weight(params[n], M)) for n in _LAYERS}

    for epoch in range(len(history) + 1, study.epochs + 1):
        tick = time.perf_counter()
        perms = torch.zeros(len(order_keys), width, dtype=torch.int64)
        for u, k in enumerate(order_keys):
            perms[u, : k[1]] = torch.randperm(k[1], generator=orders[k])
        index = perms.to(device)[order_of] + pool_offset[:, None]
        loss_sum = torch.zeros(M, dtype=torch.float64, device=device)
        correct = torch.zeros(M, dtype=torch.float64, device=device)
        resets = torch.zeros(M, dtype=torch.int64, device=device)

        for s_idx in range(max(n_batches)):
            A = sum(1 for nb in n_batches if nb > s_idx)
            cols = slice(s_idx * B, (s_idx + 1) * B)
            bi, vm = index[:A, cols], valid[:A, cols]
            x, y = x_pool[bi], y_pool[bi]
            count = vm.sum(1)
            w1a, w2a = layers["0.weight"].weight(w1, A), layers["2.weight"].weight(w2, A)
            pre = torch.baddbmm(b1[:A, None, :], x, w1a.transpose(1, 2))
            h = torch.relu(pre)
            z = torch.bmm(h, w2a.transpose(1, 2)).squeeze(-1) + b2[:A]
            losses = binary_loss(z, y) * vm
            loss_sum[:A] += losses.sum(1).to(torch.float64)
            correct[:A] += (binary_correct(z, y) * vm).sum(1).to(torch.float64)
            dz = (torch.sigmoid(z) - y) * vm / count[:, None]
            grads = {
                "2.weight": torch.bmm(dz[:, None, :], h),
                "2.bias": dz.sum(1, keepdim=True),
            }
            dpre = dz[:, :, None] * w2a * (pre > 0)
            grads["0.weight"] = torch.bmm(dpre.transpose(1, 2), x)
            grads["0.bias"] = dpre.sum(1)
            for name in _LAYERS:
                grads[name] = layers[name].trained_grad(params[name], grads[name], A)
            steps[:A] += 1
            _adam(params, state, grads, A, steps[:A], lr[:A], study.adam_eps,
                  [layers[n].multiplicative(A) if n in layers else False for n in params])
            for name in _LAYERS:
                layer = layers[name]
                if layer.reset is not None and layer.reset.rows(A) is not None:
                    resets[:A] += _enforce(params[name][:A], layer, A, rule_names, rule_of[:A], study.eps,
                                           reset_seed[:A], steps[:A])
                rows = layer.project.rows(A) if layer.project is not None else None
                if rows is not None:  # project's clips are its resets, as a single run counts them
                    resets[rows] += project_(params[name][rows], layer.code[rows], moments=[state[name][0][rows]],
                                             members=1, active=layer.project.mask[rows])

        weights = {name: layers[name].weight(params[name], M) for name in _LAYERS}  # W = T ⊙ f(V) where reparam
        val_loss, val_acc = _evaluate(weights["0.weight"], b1, weights["2.weight"], b2, x_val, y_val)
        wall = time.perf_counter() - tick
        changes = []
        for name in _LAYERS:
            now = torch.sign(weights[name])
            changes.append((now != prev_signs[name]).flatten(1).to(torch.float64).mean(1))
            prev_signs[name] = now
        row = torch.stack([loss_sum / n_train, correct / n_train, val_loss.double(), val_acc.double(),
                           resets.double(), *changes]).cpu()
        history.append(row)
        walls.append(wall)
        _record(results, alive, epoch, row, wall)
        if saver is not None:
            saver.after_epoch(lambda: {
                "format": CHECKPOINT_FORMAT, "kind": "xor ensemble", "keys": keys, "epoch": epoch,
                "seconds": spent + time.perf_counter() - start, "params": {n: p.cpu() for n, p in params.items()},
                "moments": {n: [a.cpu(), b.cpu()] for n, (a, b) in state.items()}, "steps": steps.cpu(),
                "orders": [g.get_state() for g in generators], "history": torch.stack(history), "walls": walls,
            }, last=epoch >= study.epochs)
        if on_epoch is not None:
            on_epoch(M / study.epochs)
    seconds = spent + time.perf_counter() - start
    for m, r in enumerate(results):
        r.seconds = seconds / M
        r.extra["ensemble_size"] = M
        if keep_weights:
            r.extra["weights"] = {n: (layers[n].weight(p, M) if n in layers else p)[m].detach().cpu().clone()
                                  for n, p in params.items()}
    by_key = {r.key: r for r in results}
    return [by_key[k] for k in given]


def _record(results: list[RunResult], alive: list[bool], epoch: int, row: Tensor, wall: float) -> None:
    """Add an epoch's record to each member still alive; a non-finite loss fails the member.

    ``row`` (float64, ``(5 + layers, M)``): train loss, train accuracy, validation loss and
    accuracy, resets, then each layer of :data:`_LAYERS`'s fraction of changed signs. A resumed
    call replays its checkpoint's rows here, so its records are those of an uninterrupted call.
    """
    train_loss, train_acc, val_loss, val_acc, resets, *changes = row.tolist()
    for m, result in enumerate(results):
        if not alive[m]:
            continue
        result.epochs.append(EpochRecord(epoch, train_loss[m], train_acc[m], val_loss[m], val_acc[m], int(resets[m]),
                                         {n: c[m] for n, c in zip(_LAYERS, changes)}, wall))
        if not (math.isfinite(train_loss[m]) and math.isfinite(val_loss[m])):
            alive[m] = False
            result.status, result.reason = "failed", f"non-finite loss at epoch {epoch}"


def _check(saved: dict, keys: list[str], params: dict[str, Tensor], epochs: int) -> None:
    """Raise ``ValueError`` unless ``saved`` is a checkpoint of this ensemble (its runs in this
    order, its tensors' shapes) after one of its epochs."""
    if saved.get("format") != CHECKPOINT_FORMAT or saved.get("kind") != "xor ensemble":
        raise ValueError(f"format {saved.get('format')!r}, expected XOR ensemble format {CHECKPOINT_FORMAT}")
    if saved["keys"] != keys:
        raise ValueError("it holds other runs")
    epoch = int(saved["epoch"])
    if not 0 < epoch <= epochs:
        raise ValueError(f"epoch {epoch} is not one of the runs' {epochs}")
    for name, p in params.items():
        if any(t.shape != p.shape for t in (saved["params"][name], *saved["moments"][name])):
            raise ValueError(f"its {name} doesn't fit the ensemble")
    if saved["history"].shape[0] != epoch or len(saved["walls"]) != epoch or saved["steps"].shape != (len(keys),):
        raise ValueError("its records don't fit its epoch")


def _adam(params: dict[str, Tensor], state: dict[str, tuple[Tensor, Tensor]], grads: dict[str, Tensor], A: int,
          steps: Tensor, lr: Tensor, eps: float, multiplicative: Sequence[Tensor | bool]) -> None:
    """Adam on the first ``A`` members, each with its own step count and lr (the image
    ensemble's :func:`~polarnet.experiments.stacked.adam_`); ``multiplicative``: per tensor of
    ``params``, the members taking the EG step (``(A,)`` bool), or ``False``."""
    names = list(params)
    adam_([params[n][:A] for n in names], [grads[n] for n in names], [state[n][0][:A] for n in names],
          [state[n][1][:A] for n in names], steps, lr, eps, multiplicative=list(multiplicative))


def _enforce(w: Tensor, layer: _Layer, A: int, rule_names: list[str], rule_of: Tensor, eps: float,
             seeds: Tensor, steps: Tensor) -> Tensor:
    """Freeze-SGD on the first ``A`` members of one layer (the dense core the plain
    :func:`polarnet.freeze` shares); returns resets per member. Fluid members (reset rule
    ``"none"``) are not constrained, so their rule's slot takes any rule's values."""
    member = (A,) + (1,) * (w.dim() - 1)
    rules = [name if name != "none" else "zero" for name in rule_names]
    assert layer.reset is not None
    return dense_enforce_(w, layer.code[:A], rules[0] if len(rules) == 1 else rules, eps,
                          seed=seeds.view(member), step=steps.view(member), layer=layer.index[:A].view(member),
                          members=1, active=layer.reset.mask[:A], rule_of=rule_of.view(member),
                          gather=w.device.type == "cpu")  # the CPU hashes only the violations
