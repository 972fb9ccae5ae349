"""Building and loading the C kernels: compiler, flags, target, cache, and the one-line warning.

The sources are this package's ``*.c`` and ``*.h`` files (package data, read with
:mod:`importlib.resources`). They are compiled together with the system's C compiler the first
time a kernel is needed, into ``$XDG_CACHE_HOME/polarnet`` (else ``~/.cache/polarnet``), once per
source, flags, compiler and CPU, for the target ``POLARNET_NATIVE_ARCH`` names (``-march=``;
default ``native``, ``x86-64-v3`` for any AVX2 machine), and loaded with :mod:`ctypes`.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

__all__ = ["library", "load", "status", "using", "arch", "sources", "vector_bits", "WIDE_BITS"]

#: the vector width (bits) below which the engines' kernels lose to torch: they hold 16-float tiles,
#: one AVX-512 register each; built for AVX2 (x86-64-v3) every tile takes two of 16 ymm registers
#: and spills, and benchmarks/bench_native.py measured them 2-8x slower than the torch path
#: (mlp_logits 0.50x, conv_pool 0.38x, pool_weight_grad 0.51x, grouped conv_pool 0.12x, pool_flat
#: 0.26x), while the enforcement kernel, which needs no wide tiles, stayed 2.6x faster than torch
WIDE_BITS = 512

_FLAGS = ["-O3", "-fPIC", "-shared", "-std=c11", "-fno-fast-math"]
_LOCK = threading.Lock()
_LIBRARY: ctypes.CDLL | None = None
_TRIED = False
_STATUS = ""  # what library() found, for status()
_PINNED: tuple[ctypes.CDLL, str] | None = None  # using()'s library and its target
_WARNED = "POLARNET_NATIVE_WARNED"  # set once a process has said the kernels are off

_P, _I, _C = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int  # pointer, int64_t, int


def _enforce(real: type) -> tuple[type, list[type]]:
    return _I, [_P, _P, _I, _I, _C, real, ctypes.c_uint64, _C, _P, _P]


def _enforce_rows(real: type) -> tuple[type | None, list[type]]:
    return None, [_P, _I, _P, _I, _I, _I, _P, _P, real, _P, _P]


#: each C function's return and argument types, in the order the C sources declare them
_SIGNATURES: dict[str, tuple[type | None, list[type]]] = {
    "polarnet_enforce_f32": _enforce(ctypes.c_float),
    "polarnet_enforce_f64": _enforce(ctypes.c_double),
    "polarnet_enforce_rows_f32": _enforce_rows(ctypes.c_float),
    "polarnet_enforce_rows_f64": _enforce_rows(ctypes.c_double),
    "polarnet_conv_pool_f32": (_C, [_P, _I, _I, _I, _I, _P, _I, _I, _I, _P, _P, _P, _I, _C, _I, _I]),
    "polarnet_pool_flat_f32": (None, [_P, _I, _I, _I, _I, _I, _C, _P, _P, _I, _I]),
    "polarnet_pool_wgrad_f32": (_C, [_P, _I, _I, _I, _P, _P, _I, _I, _I, _I, _I, _I, _P, _P, _I, _I]),
    "polarnet_mlp_logits_f32": (None, [_P, _I, _I, _P, _P, _P, _P, _I, _P, _I, _I]),
    "polarnet_vector_bits": (_C, []),
}


def sources() -> dict[str, str]:
    """The C sources shipped in this package, file name → text (headers included).

    Example:
        >>> sorted(sources())
        ['conv_pool.c', 'enforce.c', 'mlp.c', 'vec16.h']
    """
    root = resources.files(__package__)
    return {f.name: f.read_text() for f in sorted(root.iterdir(), key=lambda f: f.name)
            if f.name.endswith((".c", ".h"))}


def arch() -> str:
    """The compile target: ``POLARNET_NATIVE_ARCH`` (a ``-march=`` value), else ``native``.

    Example:
        >>> os.environ.get("POLARNET_NATIVE_ARCH") is not None or arch() == "native"
        True
    """
    value = os.environ.get("POLARNET_NATIVE_ARCH", "").strip() or "native"
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", value):
        raise ValueError(f"POLARNET_NATIVE_ARCH={value!r} is not a -march= target; use e.g. native or x86-64-v3")
    return value


def _cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "polarnet"


def _cpu() -> str:
    """What ``-march=native`` compiles for: the CPU's model and flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [line for line in text.splitlines() if line.startswith(("model name", "flags"))][:2]
        return "\n".join(lines)
    except OSError:
        return platform.processor() or platform.machine()


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _build(compiler: str, target: Path, flags: list[str], code: dict[str, str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        for name, text in code.items():
            (Path(tmp) / name).write_text(text)
        units = [str(Path(tmp) / name) for name in code if name.endswith(".c")]
        built = Path(tmp) / target.name
        subprocess.run([compiler, *flags, *units, "-o", str(built)], check=True, capture_output=True, timeout=120)
        os.replace(built, target)  # atomic: a concurrent process sees the old file or the new one


def load(target: str | None = None, compiler: str | None = None) -> ctypes.CDLL:
    """The kernels built for ``target`` (a ``-march=`` value; default :func:`arch`), from the
    cache or compiled now, loaded with their signatures; raises where that fails. Several
    targets load side by side (each its own file), which is how a benchmark compares them.

    Raises:
        FileNotFoundError: no C compiler. ``OSError`` / ``subprocess.SubprocessError``: the
            build or the load failed.

    Example:
        >>> lib = load("x86-64-v3") if library() is not None else None
        >>> lib is None or hasattr(lib, "polarnet_mlp_logits_f32")
        True
    """
    target = target or arch()
    compiler = compiler or _compiler()
    if compiler is None:
        raise FileNotFoundError("no C compiler ($CC is unset and PATH has no cc, gcc or clang)")
    flags, code = [*_FLAGS, f"-march={target}"], sources()
    key = "\0".join([*code.values(), " ".join(flags), compiler, _cpu()])
    path = _cache_dir() / f"kernels-{hashlib.sha256(key.encode()).hexdigest()[:16]}.so"
    try:
        if not path.exists():
            _build(compiler, path, flags, code)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError):  # an unwritable cache: a private temporary folder
        path = Path(tempfile.mkdtemp(prefix="polarnet-native-")) / path.name
        _build(compiler, path, flags, code)
        lib = ctypes.CDLL(str(path))
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def _first_line(error: BaseException) -> str:
    """The gist of a failed build: the compiler's first line of errors, else the exception."""
    stderr = getattr(error, "stderr", None)
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else str(stderr or "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines:
        return lines[0][:200]
    if isinstance(error, subprocess.CalledProcessError):
        return f"exit status {error.returncode}, no message"
    return f"{type(error).__name__}: {error}"[:200]


def _unavailable(why: str) -> None:
    """Say once, in one line, that the kernels are off: a silent fallback would leave a user
    wondering why training is slower than the benchmarks. No source line is printed under it
    (the warning's location is the package, not a line of it), and POLARNET_NATIVE=0 silences it.
    A sweep's worker processes inherit the mark left in the environment, so a command says it
    once, not once per worker."""
    if os.environ.get(_WARNED):
        return
    message = (f"the C kernels are off: {why}; the torch paths do their work (the same "
               f"numbers, slower). Install a C compiler, or set POLARNET_NATIVE=0 to turn them off quietly")
    warnings.warn_explicit(message, RuntimeWarning, filename="polarnet.native", lineno=0, module="polarnet.native")
    os.environ[_WARNED] = "1"


def _label(target: str) -> str:
    """``native x86-64-v3``, or for ``-march=native`` the CPU it was built for."""
    if target != "native":
        return f"native {target}"
    model = next((line.split(":", 1)[1].strip() for line in _cpu().splitlines() if line.startswith("model name")),
                 platform.machine())
    return f"native ({model})"


def library() -> ctypes.CDLL | None:
    """The compiled kernels, built on first use (see the module docstring), or ``None`` when
    ``POLARNET_NATIVE=0``, there is no compiler, or the build fails (the last two say so once
    per process in one ``RuntimeWarning`` line).

    Example:
        >>> lib = library()
        >>> lib is None or hasattr(lib, "polarnet_enforce_f32")
        True
    """
    global _LIBRARY, _TRIED, _STATUS
    if _PINNED is not None:
        return _PINNED[0]
    if _TRIED:
        return _LIBRARY
    with _LOCK:
        if _TRIED:
            return _LIBRARY
        if os.environ.get("POLARNET_NATIVE", "1") == "0":
            _TRIED, _STATUS = True, "off: POLARNET_NATIVE=0"
            return None
        compiler, target = _compiler(), arch()  # a bad target raises here, and again on the next call
        _TRIED = True
        if compiler is None:
            _STATUS = "off: no C compiler"
            _unavailable("no C compiler ($CC is unset and PATH has no cc, gcc or clang)")
            return None
        try:
            _LIBRARY = load(target, compiler)
        except (OSError, subprocess.SubprocessError) as e:
            _STATUS = f"off: {compiler} failed for -march={target} ({_first_line(e)})"
            _unavailable(f"the C compiler {compiler!r} could not build them ({_first_line(e)})")
            return None
        _STATUS = _label(target)
        return _LIBRARY


def status() -> str:
    """Which path the kernels take in this process, in a few words, without building anything:
    ``native (AMD EPYC …), 512-bit vectors: enforcement and engine kernels`` (built with
    ``-march=native``), ``native x86-64-v3, 256-bit vectors: enforcement kernel only``,
    ``off: POLARNET_NATIVE=0``, ``off: no C compiler``, ``off: cc failed …``, or
    ``not built yet (native)`` before the first kernel call.

    Example:
        >>> library() is None or status().startswith("native")
        True
    """
    if _PINNED is not None or (_TRIED and _LIBRARY is not None):
        label = _label(_PINNED[1]) if _PINNED is not None else _STATUS
        bits = vector_bits()
        return f"{label}, {bits}-bit vectors: " + ("enforcement and engine kernels" if bits >= WIDE_BITS
                                                    else "enforcement kernel only")
    if _TRIED:
        return _STATUS
    if os.environ.get("POLARNET_NATIVE", "1") == "0":
        return "off: POLARNET_NATIVE=0"
    return f"not built yet ({arch()})"


def vector_bits() -> int:
    """The widest vectors the built kernels use (512 on AVX-512, 256 on AVX2), 0 with no kernels.

    Example:
        >>> vector_bits() in (0, 128, 256, 512)
        True
    """
    lib = library()
    return int(lib.polarnet_vector_bits()) if lib is not None else 0


@contextmanager
def using(target: str) -> Iterator[ctypes.CDLL]:
    """Within the block, every kernel runs the build for ``target`` (:func:`load`'s), so two
    targets can be compared in one process. Not thread-safe: for benchmarks and tests.

    Example:
        >>> if library() is not None:
        ...     with using("x86-64-v3"):
        ...         print(status())
        ... else:
        ...     print("native x86-64-v3, 256-bit vectors: enforcement kernel only")
        native x86-64-v3, 256-bit vectors: enforcement kernel only
    """
    global _PINNED
    before, _PINNED = _PINNED, (load(target), target)
    try:
        yield _PINNED[0]
    finally:
        _PINNED = before
