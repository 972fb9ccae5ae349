"""Many models of one architecture as one: stacked parameters, one pass for all members.

The image ensemble (:mod:`polarnet.experiments.image_ensemble`) trains the runs of a study
cell as members of such a stack. :class:`StackedProgram` runs a model's forward pass for
every member at once, from parameters stacked along a leading member axis (as
``torch.func.stack_module_state`` stacks them); :func:`adam_` (:func:`polarnet.optim.adam_`, re-exported) is ``torch.optim.Adam``'s
update on such stacks, op for op.

How the program computes: the model is traced with ``torch.fx`` and run layer by layer. A
convolution is one grouped convolution over the members (``groups = members × groups``) in
channels-last memory, 4× faster on a CPU than the contiguous grouped convolution ``vmap``
makes of it; a linear layer is a batched product; pooling and BatchNorm act on the grouped
channels, so each member has its own statistics (normalised in the memory layout the
one-model trainer uses: torch's channels-last and contiguous kernels sum the statistics in
other orders); a ReLU that feeds a 2×2 max-pool is applied after it (the same values and
gradients, a quarter of the work). An input the members share (a validation batch, or the
training batch of a trial's conditions) goes in once: the first convolution is then one
dense convolution with the members' filters side by side; on a CPU, when it feeds a 2×2
max-pool (through a ReLU or not), one pass of a C kernel (:func:`polarnet.native.conv_pool`)
computes all three without writing the full-size output, which is larger than a core's
cache; in training it records where each window's maximum was (``max_pool2d``'s rule: a tie
goes to the first), and the backward pass takes each window's gradient from there to the
weights (:func:`polarnet.native.pool_weight_grad`), skipping the other three positions
(LeNet: validation ~20% and training ~13% faster; sums in another order, ~1e-7 relative).
In evaluation on a CPU, a ReLU and 2×2 max-pool that feed ``nn.Flatten`` (LeNet's last
convolution's) are one pass too (:func:`polarnet.native.pool_flat`), which writes the
members' activations straight in the first linear layer's order. Any other layer, function or
untraceable model runs through ``torch.func.vmap`` of ``functional_call``
(``randomness="different"``, so dropout masks differ per member).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.fx
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from .. import native
from ..optim import adam_  # re-exported: the ensembles' Adam lives with the optimisers

__all__ = ["Act", "StackedProgram", "Unstackable", "adam_", "SHARED", "MEMBERS", "GROUPED"]

SHARED, MEMBERS, GROUPED = "shared", "members", "grouped"


class Unstackable(ValueError):
    """A model the stacked program can't run; the message says what in its forward pass (the
    sweep then trains its runs one at a time, see :mod:`polarnet.experiments.engines`)."""


class Act(NamedTuple):
    """An activation of all members, in one of three layouts: :data:`SHARED` (N, …), the same
    for every member (a validation batch); :data:`MEMBERS` (M, N, …); :data:`GROUPED`
    (N, M·C, H, W), each member's channels side by side, as a grouped convolution reads and
    writes them.

    Example:
        >>> Act(torch.zeros(8, 1, 28, 28), SHARED).layout
        'shared'
    """

    t: Tensor
    layout: str


def _max_pool_2x2(x: Tensor, relu: bool = False) -> Tensor:
    """``max_pool2d(x, 2)``; with ``relu``, of ``relu(x)``, computed as the relu of the pool (the
    same values and gradients: torch's pool passes a window's gradient to its first maximum,
    which is positive unless the relu zeroes the gradient anyway), on a quarter of the values."""
    n, c, h, w = x.shape
    if x.requires_grad and torch.is_grad_enabled() or not _is_channels_last(x) or h % 2 or w % 2:
        out = F.max_pool2d(x, 2)
    else:  # evaluation: rows of pairs, then pairs within rows, in (N, H, W, C) memory: 1.8× max_pool2d's speed
        rows = x.permute(0, 2, 3, 1).reshape(n * h // 2, 2, w // 2, 2 * c)
        pairs = torch.maximum(rows[:, 0], rows[:, 1])
        out = torch.maximum(pairs[..., :c], pairs[..., c:]).view(n, h // 2, w // 2, c).permute(0, 3, 1, 2)
    return torch.relu(out) if relu else out


def _is_channels_last(x: Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _channels_last(w: Tensor) -> Tensor:
    """``w`` (4-D) in channels-last strides, also with one input channel, where torch keeps
    the contiguous strides (and a convolution then writes a contiguous output)."""
    if w.shape[1] == 1:
        w = w.contiguous()
        return w.as_strided(w.shape, (w.shape[2] * w.shape[3], 1, w.shape[3], 1))
    return w.contiguous(memory_format=torch.channels_last)


def _pair(v: Any) -> tuple[Any, Any]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # type: ignore[return-value]


def _is_2x2(m: nn.MaxPool2d) -> bool:
    return (_pair(m.kernel_size) == (2, 2) and _pair(m.stride or m.kernel_size) == (2, 2) and _pair(m.padding) == (0, 0)
            and _pair(m.dilation) == (1, 1) and not m.ceil_mode and not m.return_indices)


# parameter-free layers that act entry by entry: any layout
_ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity,
                nn.Hardtanh, nn.Softplus, nn.Mish, nn.Dropout)
# parameter-free layers that act channel by channel on (N, C, H, W): the grouped layout
_PER_CHANNEL = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Dropout2d)


class _ConvPool(torch.autograd.Function):
    """:func:`polarnet.native.conv_pool_with_codes` with its gradient: the window positions
    recorded in the forward pass say where ``max_pool2d``'s and ``relu``'s backward passes put
    each output's gradient, and :func:`polarnet.native.pool_weight_grad` takes it from there to
    the weights and the bias in one pass, skipping the zeros of the other three positions (the
    input, a data batch, takes none)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, padding: tuple[int, int],
                relu: bool) -> Tensor:
        out, codes = native.conv_pool_with_codes(x, weight, bias, padding, relu)
        ctx.save_for_backward(x, weight, codes)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, Tensor | None, None, None]:  # type: ignore[override]
        x, weight, codes = ctx.saved_tensors
        grad_weight, grad_bias = native.pool_weight_grad(x, grad, codes, tuple(weight.shape[2:]), ctx.padding)
        return None, grad_weight, grad_bias if ctx.has_bias else None, None, None


class StackedProgram:
    """A model's forward pass over stacked members (see the module docstring).

    Args:
        model: one member's architecture (its own weights are not used; its train/eval mode
            is switched by the calls).
        memory: the memory format of grouped activations (channels-last is the fast one).
        norm_memory: the format BatchNorm normalises in (that of the model trained alone).

    Example:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> nets = [nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3)) for _ in range(4)]
        >>> params = {n: torch.stack([net.get_parameter(n).detach() for net in nets]) for n, _ in nets[0].named_parameters()}
        >>> x = torch.randn(5, 1, 4, 4)
        >>> out = StackedProgram(nets[0])(params, {}, Act(x, SHARED), training=False)
        >>> out.shape, torch.allclose(out[2], nets[2](x), atol=1e-6)
        (torch.Size([4, 5, 3]), True)
    """

    def __init__(self, model: nn.Module, memory: torch.memory_format = torch.channels_last,
                 norm_memory: torch.memory_format = torch.contiguous_format) -> None:
        self.model, self.memory, self.norm_memory = model, memory, norm_memory
        try:
            graph: torch.fx.Graph | None = torch.fx.symbolic_trace(model).graph
        except Exception:  # data-dependent control flow: the whole model under vmap
            graph = None
        reads = [str(n.target) for n in graph.nodes if n.op == "get_attr"] if graph is not None else []
        if reads:  # a layer that calls F.conv2d(x, self.weight) itself: the stack has no layer to swap in
            raise Unstackable(f"the model's forward reads {reads[0]} directly, which the stacked engine can't trace")
        self.steps: list[tuple[torch.fx.Node, nn.Module | None, list[str], list[str]]] = []
        # a ReLU feeding only a 2×2 max-pool is applied after the pool (same values and gradients)
        self.deferred: set[torch.fx.Node] = set()
        self.relu_after: set[torch.fx.Node] = set()
        # a convolution that only feeds a 2×2 max-pool (through a ReLU or not): over a shared batch
        # on a CPU, one pass of the C kernel (polarnet.native.conv_pool) does all three
        self.pooled_conv: dict[torch.fx.Node, tuple[bool, list[torch.fx.Node]]] = {}
        # a 2×2 max-pool after a ReLU that only feeds nn.Flatten: in evaluation on a CPU, one pass
        # of a C kernel (polarnet.native.pool_flat) pools, rectifies and lays out for the linear layer
        self.flattened: dict[torch.fx.Node, torch.fx.Node] = {}
        if graph is not None:
            for node in graph.nodes:
                if node.op == "call_module" and type(model.get_submodule(node.target)) is nn.ReLU \
                        and len(node.users) == 1:
                    (user,) = node.users
                    pool = model.get_submodule(user.target) if user.op == "call_module" else None
                    if type(pool) is nn.MaxPool2d and _is_2x2(pool):
                        self.deferred.add(node)
                        self.relu_after.add(user)
                        after = next(iter(user.users)) if len(user.users) == 1 else None
                        flatten = model.get_submodule(after.target) if after is not None \
                            and after.op == "call_module" else None  # type: ignore[arg-type]
                        if type(flatten) is nn.Flatten and flatten.start_dim == 1 and flatten.end_dim == -1:
                            self.flattened[user] = after  # type: ignore[assignment]
            for node in graph.nodes:
                module = model.get_submodule(node.target) if node.op == "call_module" else None
                chain = self._pooled_by(model, node, module)
                if chain is not None:
                    self.pooled_conv[node] = chain
                own = ([f"{node.target}.{n}" for n, _ in module.named_parameters(recurse=False)],
                       [f"{node.target}.{n}" for n, _ in module.named_buffers(recurse=False)]) if module else ([], [])
                self.steps.append((node, module, *own))
        self.traced = graph is not None

    def __call__(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Act, training: bool) -> Tensor:
        """The members' outputs, (M, N, …), from ``params`` and ``buffers`` stacked along a
        leading member axis (buffers such as BatchNorm's running statistics are updated in
        place when ``training``)."""
        m = next(iter(params.values())).shape[0]
        if not self.traced:
            return self._vmapped(self.model, params, buffers, x, training, m).t
        env: dict[torch.fx.Node, Act] = {}
        fused: dict[torch.fx.Node, Act] = {}  # nodes a fused convolution has computed
        for node, module, pnames, bnames in self.steps:
            if node in fused:
                env[node] = fused.pop(node)
            elif node in self.pooled_conv and env[node.args[0]].layout == SHARED \
                    and self._fusable(env[node.args[0]].t, params[pnames[0]]):  # type: ignore[index]
                # (a grouped convolution over the members' own activations stays with oneDNN: its
                # sums of few channels per group keep a core's loads, not its multipliers, busy)
                relu, chain = self.pooled_conv[node]
                p = {n.rsplit(".", 1)[-1]: params[n] for n in pnames}
                padding = _pair(module.padding)  # type: ignore[union-attr]
                weight, bias = p["weight"].flatten(0, 1), p["bias"].flatten() if "bias" in p else None
                x_in = env[node.args[0]].t  # type: ignore[index]
                if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (weight, bias)):
                    out = _ConvPool.apply(x_in, weight, bias, padding, relu)
                else:
                    out = native.conv_pool(x_in, weight, bias, padding, relu)
                fused.update({c: Act(out, GROUPED) for c in chain})
            elif node.op == "placeholder":
                env[node] = x
            elif node in self.deferred:
                env[node] = env[node.args[0]]  # type: ignore[index]
            elif node in self.flattened and env[node.args[0]].layout == GROUPED \
                    and self._flat_fusable(env[node.args[0]].t):  # type: ignore[index]
                fused[self.flattened[node]] = Act(native.pool_flat(env[node.args[0]].t, m, relu=True), MEMBERS)
            elif node in self.relu_after and env[node.args[0]].layout != MEMBERS:  # type: ignore[index]
                a = env[node.args[0]]  # type: ignore[index]
                env[node] = Act(_max_pool_2x2(a.t, relu=True), a.layout)
            elif node.op == "call_module":
                assert module is not None
                if node in self.relu_after:  # its input was left members-first: grouped first
                    env[node.args[0]] = Act(self._grouped(env[node.args[0]], m), GROUPED)  # type: ignore[index]
                    env[node] = Act(_max_pool_2x2(env[node.args[0]].t, relu=True), GROUPED)  # type: ignore[index]
                    continue
                p = {n.rsplit(".", 1)[-1]: params[n] for n in pnames}
                b = {n.rsplit(".", 1)[-1]: buffers[n] for n in bnames}
                env[node] = self._module(module, p, b, env[node.args[0]], training, m)  # type: ignore[index]
            elif node.op in ("call_function", "call_method"):
                env[node] = self._function(node, env, m)
            elif node.op == "output":
                return self._members(env[node.args[0]], m)  # type: ignore[index]
            else:
                raise Unstackable(f"the model's forward reads {node.op} {node.target!r}, which the stacked engine "
                                  f"can't trace")
        raise ValueError("the traced model has no output")

    def _pooled_by(self, model: nn.Module, node: torch.fx.Node,
                   module: nn.Module | None) -> tuple[bool, list[torch.fx.Node]] | None:
        """``(relu, [ReLU node,] pool node)`` when ``node`` is a convolution the C kernel can
        fuse with the 2×2 max-pool it alone feeds."""
        if type(module) is not nn.Conv2d or len(node.users) != 1 or module.padding_mode != "zeros" \
                or isinstance(module.padding, str) or module.groups != 1 or _pair(module.stride) != (1, 1) \
                or _pair(module.dilation) != (1, 1):
            return None
        (user,) = node.users
        chain = [user]
        if user in self.deferred:  # a ReLU that feeds only a 2×2 pool
            (user,) = user.users
            chain.append(user)
        pool = model.get_submodule(user.target) if user.op == "call_module" else None  # type: ignore[arg-type]
        if type(pool) is not nn.MaxPool2d or not _is_2x2(pool):
            return None
        return len(chain) == 2, chain

    def _fusable(self, x: Tensor, weight: Tensor) -> bool:
        """Whether a fused convolution can take this shared batch: float32 on a CPU without
        autocast, a batch that needs no gradient, channels-last activations, the engines' C kernels
        built for AVX-512 (:func:`polarnet.native.engine_kernels`)."""
        return (x.dtype == weight.dtype == torch.float32 and x.device.type == "cpu" and not x.requires_grad
                and not torch.is_autocast_enabled("cpu") and self.memory is torch.channels_last
                and native.engine_kernels())

    def _flat_fusable(self, x: Tensor) -> bool:
        """Whether :func:`polarnet.native.pool_flat` can take this grouped activation: float32 on
        a CPU, no gradient to carry, the engines' C kernels built for AVX-512."""
        return (x.dtype == torch.float32 and x.device.type == "cpu" and not (x.requires_grad and torch.is_grad_enabled())
                and native.engine_kernels())

    # layouts
    def _members(self, a: Act, m: int) -> Tensor:
        if a.layout == MEMBERS:
            return a.t
        if a.layout == GROUPED:
            return a.t.unflatten(1, (m, -1)).transpose(0, 1)
        return a.t.expand(m, *a.t.shape)

    def _grouped(self, a: Act, m: int) -> Tensor:
        if a.layout == GROUPED:
            return a.t
        t = self._members(a, m)
        t = t.transpose(0, 1).flatten(1, 2)
        return t.contiguous(memory_format=self.memory) if t.dim() == 4 else t.contiguous()

    def _module(self, module: nn.Module, p: dict[str, Tensor], b: dict[str, Tensor], a: Act, training: bool,
                m: int) -> Act:
        if type(module) is nn.Conv2d and module.padding_mode == "zeros":
            weight = p["weight"].flatten(0, 1)
            if self.memory is torch.channels_last:
                weight = _channels_last(weight)  # the output follows
            bias = p["bias"].flatten() if "bias" in p else None
            shared = a.layout == SHARED and module.groups == 1  # a grouped one needs each member's copy
            t = a.t if shared else self._grouped(a, m)
            groups = module.groups * (1 if shared else m)
            return Act(F.conv2d(t, weight, bias, module.stride, module.padding, module.dilation, groups), GROUPED)
        if type(module) is nn.Linear:
            w = p["weight"]
            if a.layout == SHARED:
                out = a.t @ w.flatten(0, 1).T
                out = out.unflatten(-1, (m, -1)).movedim(-2, 0)
                return Act(out + p["bias"].view(m, *([1] * (out.dim() - 2)), -1) if "bias" in p else out, MEMBERS)
            t = self._members(a, m)
            flat = t.reshape(m, -1, t.shape[-1])
            out = torch.baddbmm(p["bias"].unsqueeze(1), flat, w.transpose(1, 2)) if "bias" in p \
                else torch.bmm(flat, w.transpose(1, 2))
            return Act(out.view(*t.shape[:-1], -1), MEMBERS)
        if isinstance(module, _ELEMENTWISE) and not p and not b:
            if isinstance(module, nn.Dropout):
                if not training or module.p == 0:
                    return a
                t = self._members(a, m) if a.layout == SHARED else a.t  # masks differ per member
                return Act(F.dropout(t, module.p, True), MEMBERS if a.layout == SHARED else a.layout)
            if type(module) is nn.ReLU:
                return Act(torch.relu(a.t), a.layout)
            return Act(module(a.t.clone() if a.layout == SHARED else a.t), a.layout)
        if isinstance(module, _PER_CHANNEL) and not p and not b and (a.layout != SHARED or not training):
            t = a.t if a.layout == SHARED else self._grouped(a, m)
            layout = SHARED if a.layout == SHARED else GROUPED
            if isinstance(module, nn.MaxPool2d) and _is_2x2(module):
                return Act(_max_pool_2x2(t), layout)
            module.train(training)
            return Act(module(t), layout)
        if type(module) is nn.Flatten and module.start_dim == 1 and module.end_dim == -1:
            return Act(a.t.flatten(1), SHARED) if a.layout == SHARED else Act(self._members(a, m).flatten(2), MEMBERS)
        if type(module) in (nn.BatchNorm1d, nn.BatchNorm2d) and (a.layout != SHARED or not training):
            return self._batch_norm(module, p, b, a, training, m)  # type: ignore[arg-type]
        return self._vmapped(module, p, b, a, training, m)

    def _batch_norm(self, module: nn.modules.batchnorm._BatchNorm, p: dict[str, Tensor], b: dict[str, Tensor],
                    a: Act, training: bool, m: int) -> Act:
        """Each member's channels are channels of the grouped layout: per-member statistics."""
        if module.momentum is None and training and module.track_running_stats:
            return self._vmapped(module, p, b, a, training, m)  # a cumulative average: the plain module
        two_d = isinstance(module, nn.BatchNorm2d)
        if two_d:
            # the layout train_run normalises in: torch's channels-last and contiguous kernels
            # sum the statistics in other orders, ~1e-4 apart where a channel's mean dwarfs its
            # spread (an image's flat background)
            t = self._grouped(a, m).contiguous(memory_format=self.norm_memory)
        else:
            members = self._members(a, m)  # (M, N, C) or (M, N, C, L)
            t = members.transpose(0, 1).flatten(1, 2)
        use_batch = training or b.get("running_mean") is None
        if training and "num_batches_tracked" in b:
            b["num_batches_tracked"].add_(1)
        out = F.batch_norm(t, b["running_mean"].view(-1) if "running_mean" in b else None,
                           b["running_var"].view(-1) if "running_var" in b else None,
                           p["weight"].flatten() if "weight" in p else None, p["bias"].flatten() if "bias" in p else None,
                           use_batch, module.momentum or 0.0, module.eps)
        if two_d:
            return Act(out.contiguous(memory_format=self.memory), GROUPED)
        return Act(out.unflatten(1, (m, -1)).transpose(0, 1), MEMBERS)

    def _vmapped(self, module: nn.Module, p: dict[str, Tensor], b: dict[str, Tensor], a: Act, training: bool,
                 m: int) -> Act:
        module.train(training)
        if not p and not b and a.layout == SHARED:
            return Act(module(a.t), SHARED)

        def one(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(module, (params, buffers), (x,))

        shared = a.layout == SHARED
        x = a.t if shared else self._members(a, m)
        out = vmap(one, in_dims=(0, 0, None if shared else 0), randomness="different")(p, b, x)
        return Act(out, MEMBERS)

    def _function(self, node: torch.fx.Node, env: dict[torch.fx.Node, Act], m: int) -> Act:
        inputs = list(node.all_input_nodes)
        if all(env[n].layout == SHARED for n in inputs):
            args, kwargs = _map(node, {n: env[n].t for n in inputs})
            return Act(_call(node, args, kwargs), SHARED)
        if node.target in (torch.flatten, "flatten") and _flatten_from_1(node) and env[inputs[0]].layout != SHARED:
            return Act(self._members(env[inputs[0]], m).flatten(2), MEMBERS)
        tensors = [env[n].t if env[n].layout == SHARED else self._members(env[n], m) for n in inputs]
        dims = tuple(None if env[n].layout == SHARED else 0 for n in inputs)

        def one(*ts: Tensor) -> Any:
            args, kwargs = _map(node, dict(zip(inputs, ts)))
            return _call(node, args, kwargs)

        return Act(vmap(one, in_dims=dims, randomness="different")(*tensors), MEMBERS)


def _map(node: torch.fx.Node, values: dict[torch.fx.Node, Tensor]) -> tuple[Any, Any]:
    return (torch.fx.node.map_arg(node.args, lambda n: values[n]),  # type: ignore[arg-type,return-value]
            torch.fx.node.map_arg(node.kwargs, lambda n: values[n]))  # type: ignore[arg-type,return-value]


def _call(node: torch.fx.Node, args: Any, kwargs: Any) -> Any:
    if node.op == "call_function":
        return node.target(*args, **kwargs)  # type: ignore[operator]
    self, *rest = args
    return getattr(self, node.target)(*rest, **kwargs)  # type: ignore[arg-type]


def _flatten_from_1(node: torch.fx.Node) -> bool:
    start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
    end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
    return start == 1 and end == -1
