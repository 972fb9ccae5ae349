"""Freeze-SGD's CPU kernel in C: one pass over a layer, resets computed for the violations only.

On a CPU the eager sparse path (:class:`polarnet.freeze.Enforcer`) spends most of its time in
``nonzero`` and in the gathers and scatters around it: about 1 ns per weight however few
weights break the template. This kernel reads each weight and its template sign once, 64 at a
time into a bit mask (a loop the compiler vectorises), and visits only the set bits: the
violations, whose resets it computes exactly as the torch paths do (the same comparisons, the
same SplitMix64 keyed uniforms of :mod:`polarnet.keyed`, the same float operations in the
weight's dtype), so its weights equal theirs bit for bit (a test holds it to that). Beside it,
the engines' kernels: an MLP ensemble's logits (``mlp.c``) and a LeNet's fused
convolution, pool and ReLU with their gradient (``conv_pool.c``).

The C sources are this package's data files (``enforce.c``, ``mlp.c``, ``conv_pool.c``,
``vec16.h``). :mod:`polarnet.native.build` compiles them with the system's C compiler the first
time a kernel is needed, into ``$XDG_CACHE_HOME/polarnet`` (else ``~/.cache/polarnet``), once
per source, flags, compiler and CPU, for ``-march=$POLARNET_NATIVE_ARCH`` (default ``native``;
``x86-64-v3`` builds for any AVX2 machine). No compiler, a failed build, or
``POLARNET_NATIVE=0`` in the environment: :func:`library` is ``None`` and the torch paths do the
work; the first two say so once per process, in one ``RuntimeWarning`` line. :func:`status`
says which it is. The engines' kernels run only on a build with AVX-512 vectors
(:func:`engine_kernels`): written for 16-float tiles, built for AVX2 they lose to torch, so
there the engines take their torch paths and only enforcement uses the kernel.
:mod:`polarnet.native.kernels` wraps each C function. Float32 and float64
only (bf16/fp16 weights take the torch path).
"""

from .build import library, status, vector_bits
from .kernels import (RULE_CODES, _SPLIT, WIDE_BITS, available, conv_pool, conv_pool_with_codes, enforce_, enforce_rows_,
                      engine_kernels, layer_key, layer_keys, mlp_logits, pool_flat, pool_weight_grad)

__all__ = ["library", "status", "vector_bits", "available", "engine_kernels", "WIDE_BITS", "enforce_", "enforce_rows_", "layer_key", "layer_keys", "mlp_logits",
           "conv_pool", "conv_pool_with_codes", "pool_weight_grad", "pool_flat", "RULE_CODES"]
