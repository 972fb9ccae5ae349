"""Train the runs of one image-study cell together, numerically as if one by one (to rounding).

A cell is the runs of a study at one training-set size: its trials and conditions, which
share the architecture. Every run is a member of an ensemble: its parameters, buffers and
Adam moments are stacked along a leading member axis (``torch.func.stack_module_state``),
and one pass of the stacked program trains or evaluates all members. Each member keeps its
own data (a pool per data seed), its own batch order (``randperm`` from its ``order_seed``,
as :func:`~polarnet.experiments.trainer.train_run` draws it), its own BatchNorm statistics,
dropout masks, learning rate, template, reset rule and keyed resets. Its numbers agree with
``train_run``'s to floating-point rounding (convolutions add in another order: ~1e-7 per
epoch in float32; more where a gradient is pure rounding noise, which Adam's first steps
scale up to lr, e.g. a bias feeding BatchNorm through an always-active unit), and, to
rounding, don't depend on which other runs share the ensemble, except dropout: its masks
come from one generator for the ensemble (the same protocol, other draws).

How they compute: :class:`~polarnet.experiments.stacked.StackedProgram` (grouped
channels-last convolutions, batched linears, per-member BatchNorm statistics and dropout
masks, ``torch.func.vmap`` for anything else). On a CPU, the members that see the same
batches (a trial's conditions: same data, same order) train side by side and read each
batch once, so their first convolution is one dense convolution; validation batches go
into all members the same way. Adam (:func:`~polarnet.experiments.stacked.adam_`) and
Freeze-SGD (:func:`polarnet.enforcement.dense_enforce_`) act on the stacked tensors.

Learners (:mod:`polarnet.learners`) mix member by member, following their
:class:`~polarnet.learners.Stacked` recipe, as in the XOR ensemble: a ``reparam-<f>``
member's constrained weights are ``V`` in the stack and the program sees ``W = T ⊙ f(V)``
(autograd takes the gradient to ``V``), an ``eg`` member takes Adam's multiplicative step on
its constrained weights, a ``project`` member is projected after the step
(:func:`polarnet.enforcement.project_`, its first moment the stacked ``exp_avg``). Fluid-SPIN
swaps train with ``freeze_sgd`` only (other learners' swapped runs train with ``train_run``).

Given a ``checkpoint`` file, the ensemble saves its stacked state after epochs (weights,
buffers, Adam, the batch-order generators, the dropout generator, the sign tracker, the
records so far) and a later call continues from it with the numbers of an uninterrupted
call, bit for bit.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import stack_module_state

from ..data.images import IMAGE_DATASETS
from ..dynamics import fluid_spin_swap
from ..enforcement import DENSE_RULES, dense_enforce_, project_, template_code
from ..init import align
from ..layers import select
from ..learners import LEARNERS, SignedMagnitude, Stacked, signed_magnitude
from ..models import get_model
from .checkpoint import Checkpoint, ensemble_checkpoint_file
from .datasets import Data, model_kwargs, task_correct, task_loss
from .ensemble import _known
from .plan import RunSpec, derive_seed
from .results import EpochRecord, RunResult, magnitude_quantiles
from .stacked import MEMBERS, SHARED, Act, StackedProgram, Unstackable, adam_
from .trainer import cudnn_benchmark, prepare_model, run_data

__all__ = ["supports_images", "image_cell", "ensemble_size", "train_image_ensemble", "ensemble_checkpoint_file",
           "CHECKPOINT_FORMAT"]

#: bumped whenever what an ensemble checkpoint holds changes; a file of another version is ignored
CHECKPOINT_FORMAT = 1
#: on a CPU, members computed together in one pass of the program (cache-sized activations),
#: and validation images per pass
_CPU_GROUP, _CPU_VAL_GROUP, _CPU_VAL_BATCH = 10, 10, 50
_GPU_VAL_BATCH = 1000
# the examples' study: the transfer preset without its source file, two conditions
_SMALL = ["source=''", "conditions=['frozen_rand', 'fluid_rand']", "val_size=100"]
#: prepared (float) training pools and validation sets are held when at most this large
_PREPARED_BYTES = 1 << 30
#: the largest ensemble on a CPU: beyond it a step costs no less per member, and chunks get coarse
_CPU_MAX_MEMBERS = 120


# -- which runs --------------------------------------------------------------------------------------

def supports_images(spec: RunSpec) -> bool:
    """Whether the image ensemble can train this run: an image dataset and a built-in reset
    rule (the dense Freeze-SGD core's; a rule of your own runs on the sparse path, one run at a
    time), and, when frozen, a learner whose :class:`~polarnet.learners.Stacked` recipe the
    ensemble knows. Mixed precision (``amp``) is as ``train_run``'s: bf16 autocast of the
    training forward pass; Fluid-SPIN swaps (``swap``) move each member's own template after
    its epochs (with ``freeze_sgd``; a swapping run of another learner trains alone).

    Example:
        >>> from .config import load_study
        >>> from .plan import plan
        >>> runs = plan(load_study("fmnist-split-transfer", _SMALL + ["trials=1", "sizes=[50]"]))
        >>> supports_images(runs[0]), supports_images(plan(load_study("xor5d", ["trials=1"]))[0])
        (True, False)
    """
    condition = spec.condition
    return spec.study.dataset in IMAGE_DATASETS and spec.reset in DENSE_RULES + ("none",) \
        and (not condition.frozen or condition.learner == "freeze_sgd"
             or (_known(LEARNERS.get(condition.learner).stacked) and not condition.swap))


def image_cell(spec: RunSpec) -> tuple[str, int, int]:
    """The runs an ensemble may hold share this key: a study at one training-set size (so one
    architecture and one number of steps per epoch); trials, conditions, reset rules and
    learning rates mix.

    Example:
        >>> from .config import load_study
        >>> from .plan import plan
        >>> runs = plan(load_study("fmnist-split-transfer", _SMALL + ["trials=2", "sizes=[50, 100]"]))
        >>> len({image_cell(r) for r in runs})
        2
    """
    return spec.study.name, spec.n_train, spec.hidden


# -- how many members -------------------------------------------------------------------------------

def _free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _footprint(spec: RunSpec) -> tuple[int, int]:
    """(parameters and buffers, activation values of one sample): counted on the meta device."""
    study = spec.study
    kwargs = model_kwargs(study) or {}
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = get_model(study.model, **kwargs).to(getattr(torch, study.dtype))
        state = sum(t.numel() for t in model.state_dict().values())
        size = study.input_size or IMAGE_DATASETS[study.dataset].size
        seen = [0]

        def count(module: nn.Module, args: Any, out: Any) -> None:
            if isinstance(out, Tensor) and not list(module.children()):
                seen[0] += out.numel()

        hooks = [m.register_forward_hook(count) for m in model.modules()]
        try:
            model(torch.zeros(1, study.in_channels, size, size, dtype=getattr(torch, study.dtype)))
        except Exception:  # a model the meta device can't run: assume a heavy one
            seen[0] = 10 * state
        for h in hooks:
            h.remove()
    return state, seen[0]


def ensemble_size(spec: RunSpec, device: str | torch.device = "cpu", *, free: int | None = None) -> int:
    """How many runs of ``spec``'s cell to train as one ensemble on ``device``.

    From the free memory (``torch.cuda.mem_get_info`` on a GPU, ``MemAvailable`` on a CPU, or
    ``free`` bytes): each member holds its weights four times (weights, gradients, two Adam
    moments) plus, on a GPU where all members run in one pass, its activations of a
    training batch and of a validation batch; half the free memory is used. On a CPU the
    members run a few at a time, and an ensemble beyond ``_CPU_MAX_MEMBERS`` gains nothing.

    Example:
        >>> from .config import load_study
        >>> from .plan import plan
        >>> run = plan(load_study("fmnist-split-transfer", _SMALL + ["trials=1", "sizes=[50]"]))[0]
        >>> ensemble_size(run, "cpu", free=1 << 30) > ensemble_size(run, "cpu", free=1 << 26) >= 1
        True
    """
    device = torch.device(device)
    study = spec.study
    state, activations = _footprint(spec)
    itemsize = torch.tensor([], dtype=getattr(torch, study.dtype)).element_size()
    if device.type == "cuda":
        per_member = itemsize * (4 * state + 3 * activations * study.batch_size + activations * _GPU_VAL_BATCH)
        fixed = 0
    else:
        per_member = itemsize * 5 * state
        fixed = itemsize * activations * 3 * max(_CPU_GROUP, _CPU_VAL_GROUP) * max(study.batch_size, _CPU_VAL_BATCH)
    budget = (free if free is not None else _free_bytes(device)) // 2 - fixed
    size = max(1, budget // max(1, per_member))
    return int(size if device.type == "cuda" else min(size, _CPU_MAX_MEMBERS))


# -- one ensemble -----------------------------------------------------------------------------------

class _Layer(NamedTuple):
    """A constrained weight of the ensemble, for one reset rule (or ``"project"``, the
    ``project`` learner's step): the members ``rows``."""

    name: str
    rule: str
    rows: Tensor | slice  # the stack's rows: a span (``active`` marks the rule's members), or the members
    members: list[int]  # the rule's members
    signs: Tensor  # int8 (rows, *shape)
    index: Tensor  # (rows, 1, …) the weight's position in each member's template
    seed: Tensor  # (rows, 1, …) each member's reset seed
    active: Tensor | None  # bool (rows, 1, …): the rule's members whose template holds this weight


class _Ensemble:
    """The stacked state of one ensemble and how it trains (:meth:`train_epoch`, :meth:`swap`,
    :meth:`evaluate` and :meth:`sign_changes` once per epoch)."""

    def __init__(self, specs: list[RunSpec], device: torch.device, memory: torch.memory_format) -> None:
        # members that see the same batches (a trial's conditions) side by side: on a CPU they
        # train together, and their first convolution is one dense convolution of the batch
        self.specs = sorted(specs, key=lambda s: (s.order_seed, s.data_seed, not s.condition.frozen, s.reset,
                                                  s.condition.name, s.trial))
        self.device = device
        first = self.specs[0]
        self.study = study = first.study
        self.n_train, self.M = first.n_train, len(self.specs)
        self.dtype = getattr(torch, study.dtype)
        self.val_group = self.M if device.type == "cuda" else _CPU_VAL_GROUP
        self.val_batch = _GPU_VAL_BATCH if device.type == "cuda" else _CPU_VAL_BATCH

        pools: dict[int, int] = {}
        parts: list[Data] = []
        for s in self.specs:
            if s.data_seed not in pools:
                pools[s.data_seed] = sum(len(p.x) for p in parts)
                parts.append(run_data(s))
        self.data = parts[0]
        x_pool = torch.cat([p.x for p in parts]).to(device)
        self.y_pool = torch.cat([p.y for p in parts]).to(device)
        self.pool_offset = torch.tensor([pools[s.data_seed] for s in self.specs], device=device)
        # prepared once when it fits: preparing is per image, so the values are those of a batch
        self.x_pool = _prepared(self.data, x_pool)
        self.x_val = _prepared(self.data, self.data.x_val.to(device))
        self.y_val = self.data.y_val.to(device)
        self.memory = memory
        self.amp, self.channels_last = study.fast_paths(device)  # as train_run uses them (bf16 autocast)
        self.lr: float | Tensor = first.lr
        if any(s.lr != first.lr for s in self.specs):
            self.lr = torch.tensor([s.lr for s in self.specs], dtype=torch.float64, device=device)
        # training passes: on a GPU all members at once; on a CPU the members sharing a batch,
        # _CPU_GROUP at most, reading it once
        keys = [(s.order_seed, s.data_seed) for s in self.specs]
        if device.type == "cuda":
            self.groups = [(0, self.M, False)]
        else:
            self.groups = []
            start = 0
            for m in range(1, self.M + 1):
                if m == self.M or keys[m] != keys[start] or m - start == _CPU_GROUP:
                    self.groups.append((start, m, True))
                    start = m
        self.order_keys = sorted({s.order_seed for s in self.specs})
        self.order_of = torch.tensor([self.order_keys.index(s.order_seed) for s in self.specs], device=device)
        self.orders = {k: torch.Generator().manual_seed(k) for k in self.order_keys}
        # Fluid SPIN: each member's swaps draw from its own generator, as train_run's do
        self.swaps = {m: torch.Generator().manual_seed(s.template_seed) for m, s in enumerate(self.specs)
                      if s.condition.swap}
        self.step = 0
        self.epoch = 0
        self.alive = [True] * self.M

    def build(self, evaluate: bool) -> list[RunResult]:
        """Models, templates and alignment as ``train_run`` makes them; the stacked state. With
        ``evaluate``, the accuracies before and after alignment (once per distinct member)."""
        prepared = [prepare_model(s) for s in self.specs]
        models = [m.to(self.device) for m, _ in prepared]
        self.templates = [t for _, t in prepared]
        base = copy.deepcopy(models[0])  # the program switches its train/eval mode
        self.program = StackedProgram(base, self.memory, torch.channels_last if self.channels_last else torch.contiguous_format)
        results = [RunResult(s.key, "done", device=str(self.device)) for s in self.specs]
        if evaluate:
            for r, acc in zip(results, self._distinct_accuracy(models)):
                r.acc_before_align = acc
        for model, template in zip(models, self.templates):
            if template is not None:
                align(model, template)
        if evaluate:
            for r, acc in zip(results, self._distinct_accuracy(models)):
                r.acc_after_align = acc
        params, buffers = stack_module_state(models)
        self.params = {n: p.detach().contiguous() for n, p in params.items()}
        self.buffers = {n: b.contiguous() for n, b in buffers.items()}
        self.names = list(self.params)
        self.avg = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.square = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.tracked = select(base, "all")
        self.last = {n: torch.sign(self.params[n]).to(torch.int8) for n in self.tracked}
        if evaluate:
            for name in self.tracked:
                for r, q in zip(results, magnitude_quantiles(self.params[name])):
                    r.extra.setdefault("init_magnitudes", {})[name] = q
        for r, s, t in zip(results, self.specs, self.templates):
            r.extra["amp"], r.extra["channels_last"] = self.amp, self.channels_last  # as train_run records them
            if s.condition.frozen and t is not None:
                r.extra["constrained"] = t.numel()
        self.layers = self._constrained()
        self._learners()
        self.base = base
        return results

    def _recipe(self, m: int) -> Stacked:
        """Member ``m``'s learner recipe (``freeze_sgd``'s when it trains without a template)."""
        s, t = self.specs[m], self.templates[m]
        recipe = LEARNERS.get(s.condition.learner if s.condition.frozen and t is not None else "freeze_sgd").stacked
        assert recipe is not None
        return recipe

    def _learners(self) -> None:
        """Per weight, the members taking the EG step (``self.multiplicative``, ``adam_``'s
        argument) and the reparam members (``self.reparam``: ``f``, mask and ``T`` per weight;
        the stack then holds their ``V``, made as :class:`~polarnet.learners.SignedMagnitude`
        makes it)."""
        self.multiplicative: list[Tensor | bool] = []
        self.reparam: dict[str, list[tuple[str, Tensor, Tensor]]] = {}
        recipes = [self._recipe(m) for m in range(self.M)]
        for name in self.names:
            w = self.params[name]
            ones = (self.M,) + (1,) * (w.dim() - 1)
            under = [m for m in range(self.M) if self.specs[m].condition.frozen and self.templates[m] is not None
                     and name in self.templates[m]]  # type: ignore[operator]
            eg = [m for m in under if recipes[m].update == "eg"]
            self.multiplicative.append(torch.tensor([m in eg for m in range(self.M)], device=self.device)
                                       if eg else False)
            fns = {recipes[m].weights for m in under} - {None}
            if not fns:
                continue
            code = torch.zeros(w.shape, dtype=torch.int8, device=self.device)
            for m in under:
                if recipes[m].weights is not None:
                    code[m] = template_code(self.templates[m][name]).to(self.device)  # type: ignore[index]
            for fn in sorted(fns):  # type: ignore[type-var]
                mask = torch.tensor([m in under and recipes[m].weights == fn for m in range(self.M)],
                                    device=self.device).view(ones)
                self.reparam.setdefault(name, []).append((fn, mask, code))
                w.copy_(torch.where(mask, SignedMagnitude(code, fn).right_inverse(w), w))

    def weights(self, params: dict[str, Tensor] | None = None, sub: slice = slice(None)) -> dict[str, Tensor]:
        """The weights the members ``sub`` compute with, from the stack ``params`` (default: the
        ensemble's): ``T ⊙ f(V)`` for reparam members (the parametrization's expression), the
        stack elsewhere. Differentiable: training takes the gradient to ``V`` through it."""
        params = self.params if params is None else params
        out = dict(params)
        for name, groups in self.reparam.items():
            v = w = params[name]
            for fn, mask, code in groups:
                m = mask[sub]
                # f sees 0 in the other members' rows: an inf of f there would make a NaN
                # gradient (0 · inf) that reaches their own weights
                w = torch.where(m, signed_magnitude(torch.where(m, v, 0), code[sub], fn), w)
            out[name] = w
        return out

    def _constrained(self) -> list[_Layer]:
        layers = []
        frozen = [m for m, (s, t) in enumerate(zip(self.specs, self.templates)) if s.condition.frozen and t is not None]
        names = []
        for m in frozen:
            for name in self.templates[m]:  # type: ignore[union-attr]
                if name not in self.params:
                    raise Unstackable(f"template layer {name!r} is not a parameter the ensemble stacks (a tied "
                                      f"weight?)")
                if name not in names:
                    names.append(name)
        rules: dict[str, list[int]] = {}
        for m in frozen:
            after = self._recipe(m).after
            if after is not None:  # reset with the run's rule, or project
                rules.setdefault(self.specs[m].reset if after == "reset" else "project", []).append(m)
        for rule, members in rules.items():
            # the rule's members as a span of the stack (members of other rules in it inactive) where
            # that is cheap: on a CPU, where the C kernel enforces them in place; elsewhere, the members
            # gathered (a template byte per constrained weight, no more)
            span = list(range(members[0], members[-1] + 1))
            rows: Tensor | slice = slice(members[0], members[-1] + 1)
            if members != span and self.device.type != "cpu":
                rows, span = torch.tensor(members, device=self.device), members
            for name in names:
                w = self.params[name]
                ones = (len(span),) + (1,) * (w.dim() - 1)
                signs = torch.zeros((len(span), *w.shape[1:]), dtype=torch.int8, device=self.device)
                index = torch.zeros(len(span), dtype=torch.int64)
                has = torch.zeros(len(span), dtype=torch.bool)
                for i, m in enumerate(span):
                    template = self.templates[m]
                    if m in members and template is not None and name in template:
                        signs[i] = template_code(template[name]).to(self.device)
                        index[i] = list(template).index(name)
                        has[i] = True
                if not bool(has.any()):
                    continue
                seed = torch.tensor([self.specs[m].reset_seed for m in span], dtype=torch.int64)
                layers.append(_Layer(name, rule, rows, members, signs, index.view(ones).to(self.device),
                                     seed.view(ones).to(self.device),
                                     None if bool(has.all()) else has.view(ones).to(self.device)))
        return layers

    def _distinct_accuracy(self, models: list[nn.Module]) -> list[float]:
        """Validation accuracy of each model, evaluating each distinct set of weights once (the
        conditions of a trial often start from the same weights)."""
        keys = [_fingerprint(m) for m in models]
        first: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        unique = sorted(first.values())
        params, buffers = stack_module_state([models[i] for i in unique])
        params = {n: p.detach() for n, p in params.items()}
        _, acc = self.evaluate(params, buffers)
        by_key = {keys[i]: float(a) for i, a in zip(unique, acc.tolist())}
        return [by_key[k] for k in keys]

    @torch.no_grad()
    def evaluate(self, params: dict[str, Tensor] | None = None,
                 buffers: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """Validation loss and accuracy per member (float64, on the device): every batch goes
        through all members at once."""
        params = self.weights() if params is None else params
        buffers = self.buffers if buffers is None else buffers
        m_all = next(iter(params.values())).shape[0]
        loss = torch.zeros(m_all, dtype=torch.float64, device=self.device)
        correct = torch.zeros(m_all, dtype=torch.float64, device=self.device)
        n = len(self.y_val)
        for start in range(0, n, self.val_batch):
            x = self.x_val[start : start + self.val_batch]
            if x.dtype == torch.uint8:
                x = self.data.inputs(x)
            y = self.y_val[start : start + self.val_batch]
            for g in range(0, m_all, self.val_group):
                sub = slice(g, min(g + self.val_group, m_all))
                out = self.program({k: v[sub] for k, v in params.items()}, {k: v[sub] for k, v in buffers.items()},
                                   Act(x, SHARED), False)
                size = out.shape[0]
                flat, target = out.flatten(0, 1), y.repeat(size)
                loss[sub] += task_loss(self.data.task, flat, target).view(size, -1).sum(1).double()
                correct[sub] += task_correct(self.data.task, flat, target).view(size, -1).sum(1).double()
        return loss / n, correct / n

    def train_epoch(self) -> tuple[Tensor, Tensor, Tensor]:
        """One epoch for every member; returns train loss, train accuracy (float64) and resets."""
        B, n = self.study.batch_size, self.n_train
        perms = torch.stack([torch.randperm(n, generator=self.orders[k]) for k in self.order_keys]).to(self.device)
        index = perms[self.order_of] + self.pool_offset[:, None]
        loss_sum = torch.zeros(self.M, dtype=torch.float64, device=self.device)
        correct = torch.zeros(self.M, dtype=torch.float64, device=self.device)
        resets = torch.zeros(self.M, dtype=torch.int64, device=self.device)
        grads = {k: torch.empty_like(v) for k, v in self.params.items()}
        for start in range(0, n, B):
            batch = index[:, start : start + B]
            y = self.y_pool[batch]
            for first, stop, shared in self.groups:
                sub = slice(first, stop)
                # the members of a shared group see one batch: it goes in once
                x = self.x_pool[batch[first] if shared else batch[sub]]
                if x.dtype == torch.uint8:
                    x = self.data.inputs(x) if shared else self.data.inputs(x.flatten(0, 1)).unflatten(0, x.shape[:2])
                leaves = {k: v[sub].detach().requires_grad_() for k, v in self.params.items()}
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    # reparam weights are computed where train_run's parametrization is: in autocast
                    weights = self.weights(leaves, sub) if self.reparam else leaves
                    out = self.program(weights, {k: v[sub] for k, v in self.buffers.items()},
                                       Act(x, SHARED if shared else MEMBERS), True)
                    size, b = out.shape[:2]
                    flat, target = out.flatten(0, 1), y[sub].flatten()
                    losses = task_loss(self.data.task, flat.float() if self.amp else flat, target).view(size, b)
                found = torch.autograd.grad(losses.mean(1).sum(), list(leaves.values()))
                for k, gk in zip(leaves, found):
                    grads[k][sub] = gk
                loss_sum[sub] += losses.detach().sum(1).double()
                correct[sub] += task_correct(self.data.task, flat.detach(), target).view(size, b).sum(1).double()
            self.step += 1
            with torch.no_grad():
                adam_([self.params[k] for k in self.names], [grads[k] for k in self.names],
                      [self.avg[k] for k in self.names], [self.square[k] for k in self.names], self.step, self.lr,
                      self.study.adam_eps, multiplicative=self.multiplicative)
                for layer in self.layers:
                    resets[layer.rows] += self._enforce(layer)
        self.epoch += 1
        return loss_sum / n, correct / n, resets

    def _enforce(self, layer: _Layer) -> Tensor:
        """Freeze-SGD (or ``project``) of one weight for one rule's members; their resets (or clips)."""
        w, avg = self.params[layer.name], self.avg[layer.name]

        def pick(t: Tensor) -> Tensor:
            return t[layer.rows] if isinstance(layer.rows, slice) else t.index_select(0, layer.rows)

        rows = pick(w)
        if layer.rule == "project":
            moment = pick(avg)  # the first moment that would carry a clipped weight out again
            counts = project_(rows, layer.signs, moments=[moment], members=1, active=layer.active)
            if not isinstance(layer.rows, slice):
                avg.index_copy_(0, layer.rows, moment)
        else:
            counts = dense_enforce_(rows, layer.signs, layer.rule, self.study.eps, seed=layer.seed, step=self.step,
                                    layer=layer.index, members=1, active=layer.active,
                                    gather=rows.device.type == "cpu")  # the CPU hashes only the violations
        if not isinstance(layer.rows, slice):
            w.index_copy_(0, layer.rows, rows)
        return counts

    def swap(self) -> None:
        """Fluid SPIN: flip a share of each swapping member's template and weights (after its
        epoch's steps, as ``train_run`` does), and enforce the new signs from now on."""
        for m, generator in self.swaps.items():
            template, condition = self.templates[m], self.specs[m].condition
            if template is None:
                continue
            weights = {name: self.params[name][m] for name in template}  # views: flips land in the stack
            fluid_spin_swap(weights, template, condition.swap, mode=condition.swap_mode,  # type: ignore[arg-type]
                            generator=generator)
            self._refresh_signs(m)

    def _refresh_signs(self, m: int) -> None:
        template = self.templates[m]
        for layer in self.layers:
            if m in layer.members and template is not None and layer.name in template:
                row = m - layer.rows.start if isinstance(layer.rows, slice) else layer.members.index(m)
                layer.signs[row] = template_code(template[layer.name]).to(self.device)

    def sign_changes(self) -> list[dict[str, float]]:
        """Per member, the fraction of each weight's signs changed since the last call."""
        fractions: list[dict[str, float]] = [{} for _ in range(self.M)]
        weights = self.weights()
        for name in self.tracked:
            now = torch.sign(weights[name]).to(torch.int8)
            changed = (now != self.last[name]).flatten(1).sum(1).tolist()
            size = max(1, now[0].numel())
            for m, c in enumerate(changed):
                fractions[m][name] = float(c) / size
            self.last[name] = now
        return fractions

    # checkpoints
    def state(self) -> dict[str, Any]:
        return {"params": {k: v.cpu() for k, v in self.params.items()},
                "buffers": {k: v.cpu() for k, v in self.buffers.items()},
                "avg": {k: v.cpu() for k, v in self.avg.items()}, "square": {k: v.cpu() for k, v in self.square.items()},
                "last": {k: v.cpu() for k, v in self.last.items()},
                "orders": {str(k): g.get_state() for k, g in self.orders.items()},
                "swaps": {str(m): g.get_state() for m, g in self.swaps.items()},
                "templates": {str(m): dict(self.templates[m]) for m in self.swaps  # type: ignore[arg-type]
                              if self.templates[m] is not None},
                "step": self.step, "epoch": self.epoch, "alive": list(self.alive)}

    def restore(self, state: dict[str, Any]) -> None:
        for mine, saved in ((self.params, state["params"]), (self.buffers, state["buffers"]), (self.avg, state["avg"]),
                            (self.square, state["square"]), (self.last, state["last"])):
            if set(mine) != set(saved) or any(mine[k].shape != saved[k].shape for k in mine):
                raise ValueError("the saved tensors don't fit the ensemble")
            for k in mine:
                mine[k].copy_(saved[k])
        for k, g in self.orders.items():
            g.set_state(state["orders"][str(k)])
        for m, g in self.swaps.items():  # a swap changed the member's template
            g.set_state(state["swaps"][str(m)])
            template = self.templates[m]
            if template is not None:
                for name, signs in state["templates"][str(m)].items():
                    template[name] = signs
                self._refresh_signs(m)
        self.step, self.epoch, self.alive = int(state["step"]), int(state["epoch"]), list(state["alive"])


def _prepared(data: Data, x: Tensor) -> Tensor:
    """Images as model input, when the whole tensor fits :data:`_PREPARED_BYTES` (else kept
    as uint8 and prepared batch by batch)."""
    if data.prep is None:
        return x
    one = data.inputs(x[:1])
    if one.numel() * one.element_size() * len(x) > _PREPARED_BYTES:
        return x
    return torch.cat([data.inputs(x[s : s + 1024]) for s in range(0, len(x), 1024)]) if len(x) else one[:0]


def _fingerprint(model: nn.Module) -> bytes:
    digest = hashlib.sha256()
    for name, t in model.state_dict().items():
        digest.update(name.encode())
        digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.digest()


# -- training a cell --------------------------------------------------------------------------------

def train_image_ensemble(specs: Sequence[RunSpec], device: str | torch.device = "cpu", keep_weights: bool = False,
                         on_epoch: Callable[[float], None] | None = None,
                         checkpoint: str | os.PathLike[str] | None = None, *, max_members: int | None = None,
                         checkpoint_overhead: float = 0.1) -> list[RunResult]:
    """Train runs of one image-study cell (:func:`image_cell`) as vectorised ensembles.

    Args:
        specs: the runs; all :func:`supports_images`, all of one cell.
        device: where to train.
        keep_weights: put each run's final ``state_dict`` (on the CPU) in ``extra["weights"]``.
        on_epoch: called with ``runs / epochs`` after every epoch of an ensemble (progress).
        checkpoint: a file (e.g. :func:`ensemble_checkpoint_file`). After finished epochs (see
            ``checkpoint_overhead``) the whole state is written there atomically: the finished
            ensembles' results, and the running one's stacked weights, buffers, Adam moments,
            batch-order generators, dropout generator, sign tracker and records. If the file
            holds the state of these runs, training continues from it with exactly the numbers
            of an uninterrupted call; an unreadable or foreign file is ignored with a warning.
            The file is left in place: delete it once the results are safe.
        max_members: the most runs trained at once (default: :func:`ensemble_size`); more runs
            train as several ensembles, one after the other.
        checkpoint_overhead: the share of training time that writing checkpoints may take (as
            :func:`~polarnet.experiments.trainer.train_run`'s).

    Returns:
        One :class:`RunResult` per spec, in the order given, with the records ``train_run``
        gives (``extra["ensemble_size"]`` added); ``seconds`` is the ensemble's time shared out.

    Raises:
        ValueError: runs of different cells, or a run the ensemble can't train.

    Example (it reads Fashion-MNIST, which the tests check for):
        >>> from .config import load_study
        >>> from .plan import plan
        >>> runs = plan(load_study("fmnist-split-transfer", _SMALL + ["trials=2", "epochs=1", "sizes=[50]"]))
        >>> [r.status for r in train_image_ensemble(runs)]  # doctest: +SKIP
        ['done', 'done', 'done', 'done']
    """
    specs = list(specs)
    if not specs:
        return []
    device = torch.device(device)
    cell = image_cell(specs[0])
    for s in specs:
        if not supports_images(s):
            raise ValueError(f"run {s.key} ({s.condition.name}, reset {s.reset!r}): the image ensemble trains image "
                             f"studies with the built-in reset rules; train it with train_run")
        if image_cell(s) != cell or s.study != specs[0].study:
            raise ValueError("an image ensemble takes runs of one study at one training-set size; "
                             f"got sizes {sorted({r.n_train for r in specs})} of studies "
                             f"{sorted({r.study.name for r in specs})}")
    if len({s.key for s in specs}) != len(specs):
        raise ValueError("the same run is listed twice")
    path = Path(checkpoint) if checkpoint is not None else None
    saved = Checkpoint(path).read(lambda state: _check(state, specs, keep_weights), "its runs") \
        if path is not None else None
    by_key = {s.key: s for s in specs}
    if saved is not None:  # the split it was made with (free memory may differ now)
        ensembles = [[by_key[k] for k in keys] for keys in saved["ensembles"]]
    else:
        size = max_members or ensemble_size(specs[0], device)
        if size < 1:
            raise ValueError(f"max_members must be at least 1, got {size}")
        count = math.ceil(len(specs) / size)
        # as even as possible, a trial's conditions together (they share batches)
        ordered = sorted(specs, key=lambda s: (s.trial, s.condition.name, s.reset))
        bounds = [round(i * len(ordered) / count) for i in range(count + 1)]
        ensembles = [ordered[bounds[i] : bounds[i + 1]] for i in range(count)]
    finished: dict[str, RunResult] = {}
    weights: dict[str, dict[str, Tensor]] = {}
    if saved is not None:
        finished = {k: _result_from(v) for k, v in saved["finished"].items()}
        weights = saved["weights"]
    for number, members in enumerate(ensembles):
        if all(s.key in finished for s in members):
            continue
        state = saved["running"] if saved is not None and saved.get("running_index") == number else None
        writer = _Writer(path, checkpoint_overhead, [[s.key for s in e] for e in ensembles], number, finished,
                         weights, keep_weights) if path is not None else None
        for result, kept in _train_ensemble(members, device, on_epoch, state, writer, keep_weights):
            finished[result.key] = result
            if kept is not None:
                weights[result.key] = kept
    out = []
    for s in specs:
        result = finished[s.key]
        if keep_weights:
            result.extra["weights"] = weights[s.key]
        out.append(result)
    return out


def _train_ensemble(specs: list[RunSpec], device: torch.device, on_epoch: Callable[[float], None] | None,
                    state: dict[str, Any] | None, writer: _Writer | None,
                    keep_weights: bool) -> list[tuple[RunResult, dict[str, Tensor] | None]]:
    start = time.perf_counter()
    study = specs[0].study
    memory = torch.channels_last
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    # model construction and dropout draw from torch's global generator: our own seed, and the
    # caller's generator is left as it was
    amp, channels_last = study.fast_paths(device)
    with torch.random.fork_rng(devices=cuda), cudnn_benchmark(device.type == "cuda" and (amp or channels_last)):
        seed = derive_seed(study.seed, "ensemble dropout", sorted(s.key for s in specs))
        torch.manual_seed(seed)
        ens = _Ensemble(specs, device, memory)
        results = ens.build(evaluate=state is None)
        if state is not None:
            ens.restore(state["ensemble"])
            for r, saved in zip(results, state["results"]):
                r.__dict__.update(_result_from(saved).__dict__)
            torch.set_rng_state(state["rng"])
            if cuda and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"], cuda[0])
        spent = float(state["seconds"]) if state is not None else 0.0
        for epoch in range(ens.epoch + 1, study.epochs + 1):
            tick = time.perf_counter()
            train_loss, train_acc, resets = ens.train_epoch()
            ens.swap()
            val_loss, val_acc = ens.evaluate()
            changes = ens.sign_changes()
            wall = time.perf_counter() - tick
            rows = zip(train_loss.tolist(), train_acc.tolist(), val_loss.tolist(), val_acc.tolist(), resets.tolist())
            for m, (tl, ta, vl, va, n) in enumerate(rows):
                if not ens.alive[m]:
                    continue
                results[m].epochs.append(EpochRecord(epoch, tl, ta, vl, va, int(n), changes[m], wall))
                if not (math.isfinite(tl) and math.isfinite(vl)):
                    ens.alive[m] = False
                    results[m].status, results[m].reason = "failed", f"non-finite loss at epoch {epoch}"
            if writer is not None and any(ens.alive):
                writer.after_epoch(ens, results, spent + time.perf_counter() - start, cuda)
            if on_epoch is not None:
                on_epoch(ens.M / study.epochs)
    seconds = spent + time.perf_counter() - start
    out = []
    for m, r in enumerate(results):
        r.seconds = seconds / ens.M
        r.extra["ensemble_size"] = ens.M
        kept = None
        if keep_weights:
            kept = {k: v[m].detach().cpu().clone() for k, v in {**ens.weights(), **ens.buffers}.items()}
            kept = {k: kept[k] for k in ens.base.state_dict()}
        out.append((r, kept))
    return out


def _result_from(saved: dict[str, Any]) -> RunResult:
    saved = dict(saved)
    saved["epochs"] = [EpochRecord(**e) for e in saved["epochs"]]
    return RunResult(**saved)


def _result_state(result: RunResult) -> dict[str, Any]:
    state = asdict(result)
    state["extra"] = {k: v for k, v in state["extra"].items() if k != "weights"}
    return state


class _Writer:
    """Writes the checkpoint of a call: after the first epoch of an ensemble, then whenever the
    epochs since the last write took at least ``1 / overhead`` times as long as that write
    (never after the last epoch: the results follow)."""

    def __init__(self, path: Path, overhead: float, ensembles: list[list[str]], number: int,
                 finished: dict[str, RunResult], weights: dict[str, dict[str, Tensor]], keep_weights: bool) -> None:
        self.checkpoint, self.ensembles, self.number = Checkpoint(path, overhead), ensembles, number
        self.finished, self.weights, self.keep_weights = finished, weights, keep_weights

    def after_epoch(self, ens: _Ensemble, results: list[RunResult], seconds: float, cuda: list[int]) -> None:
        def state() -> dict[str, Any]:
            running = {"ensemble": ens.state(), "results": [_result_state(r) for r in results],
                       "rng": torch.get_rng_state(), "seconds": seconds}
            if cuda:
                running["cuda_rng"] = torch.cuda.get_rng_state(cuda[0])
            return {"format": CHECKPOINT_FORMAT, "kind": "image ensemble", "ensembles": self.ensembles,
                    "finished": {k: _result_state(r) for k, r in self.finished.items()}, "weights": self.weights,
                    "keep_weights": self.keep_weights, "running_index": self.number, "running": running}

        self.checkpoint.after_epoch(state, last=ens.epoch >= ens.study.epochs)


def _check(state: dict[str, Any], specs: list[RunSpec], keep_weights: bool) -> None:
    """Raise ``ValueError`` unless ``state`` is an image-ensemble checkpoint of these runs that can go on."""
    if state.get("format") != CHECKPOINT_FORMAT or state.get("kind") != "image ensemble":
        raise ValueError(f"format {state.get('format')!r}, expected image ensemble format {CHECKPOINT_FORMAT}")
    keys = sorted(k for ensemble in state["ensembles"] for k in ensemble)
    if keys != sorted(s.key for s in specs):
        raise ValueError("it holds other runs")
    if keep_weights and not state["keep_weights"] and state["finished"]:
        raise ValueError("its finished runs' weights were not kept")
    epoch = int(state["running"]["ensemble"]["epoch"])
    if not 0 < epoch <= specs[0].study.epochs:
        raise ValueError(f"epoch {epoch} is not one of the runs' {specs[0].study.epochs}")
