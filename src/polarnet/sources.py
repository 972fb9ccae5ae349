"""Load source weights: state-dict files (``.pt``, ``.pth``, ``.safetensors``), torchvision
weights names such as ``AlexNet_Weights.IMAGENET1K_V1``, timm models' pretrained weights
(``timm:resnet18.a1_in1k``) and Hugging Face model repos (``hf:prajjwal1/bert-tiny``,
``hf:ORG/NAME@REVISION``).

Each name loads through its library's own cache, so it works offline once the file is there:
- a torchvision name downloads through torch hub, or reads ``$TORCH_HOME/hub/checkpoints``;
- ``timm:NAME`` finds the weights file as timm does (the name's pretrained config: its
  ``hf_hub_id`` in the Hugging Face cache, else its ``url`` in the torch hub cache), then has
  timm build the model from that file (so timm's own key remapping applies) and returns the
  model's state dict;
- ``hf:REPO`` reads the repo's ``model.safetensors`` or ``pytorch_model.bin`` (or the shards a
  ``*.index.json`` lists) from the Hugging Face cache (``$HF_HUB_CACHE``, else
  ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``); no transformers model is built.

The cache variables are read at each call. With ``HF_HUB_OFFLINE=1``, or when the hub can't be
reached within a few seconds, only the cache is read, and a miss is a :class:`SourceError` that
names the cache folder, the file expected and how to put it there.

Only regular files are read: a directory, FIFO or device raises :class:`SourceError` at
once. A file is recognised by its first bytes, not its name: safetensors (an 8-byte header
length, then ``{``) loads with safetensors, anything else that may be a ``torch.save`` file
(zip or pickle) with ``torch.load(weights_only=True)``. Files that are certainly not weights
(a polarnet template ``.plt``, a proportions or other JSON file, text, an empty file, NumPy
or gzip data) are refused in one line that says what the file is and what to pass instead;
so is a file torch can't read, without torch's advice to retry with ``weights_only=False``
(unsafe, and polarnet never does it). Complex and sparse tensors can't be sign-constrained
weights; they are left out of the returned state dict with a warning that names them.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import socket
import stat
import struct
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["load_state_dict", "SourceError", "sniff", "is_weights_name"]

_WEIGHTS_NAME = re.compile(r"^[A-Za-z0-9_]+_Weights\.[A-Za-z0-9_]+$")  # a torchvision weights name
_TIMM, _HF = "timm:", "hf:"
_NAMES = ("a .pt/.pth/.safetensors file, a torchvision weights name like 'AlexNet_Weights.IMAGENET1K_V1', "
          "'timm:MODEL' (e.g. timm:resnet18.a1_in1k) or 'hf:ORG/NAME' (a Hugging Face model repo)")


def is_weights_name(text: str) -> bool:
    """Whether ``text`` names weights that :func:`load_state_dict` fetches by name rather than
    reads from a file: a torchvision weights name, ``timm:MODEL`` or ``hf:REPO``.

    Example:
        >>> [is_weights_name(s) for s in ("AlexNet_Weights.IMAGENET1K_V1", "timm:resnet18", "hf:a/b", "w.pt")]
        [True, True, True, False]
    """
    return bool(_WEIGHTS_NAME.match(text)) or text.startswith((_TIMM, _HF))


class SourceError(ValueError):
    """A source of weights could not be found or read."""


def _unwrap(obj: object, where: str) -> dict[str, Tensor]:
    for key in ("state_dict", "model_state_dict", "model"):  # common checkpoint wrappers
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not any(isinstance(v, Tensor) for v in obj.values()):
        raise SourceError(f"{where}: holds no state dict (a mapping of names to tensors); save model.state_dict() instead")
    tensors = {k: v for k, v in obj.items() if isinstance(v, Tensor)}
    odd = [f"{k!r} ({'complex' if v.is_complex() else v.layout})" for k, v in tensors.items()
           if v.is_complex() or v.layout != torch.strided]
    if odd:
        warnings.warn(f"{where}: left out {len(odd)} tensor(s) that can't carry weight signs: {', '.join(odd[:8])}"
                      f"{' …' if len(odd) > 8 else ''}", stacklevel=3)
        tensors = {k: v for k, v in tensors.items() if not (v.is_complex() or v.layout != torch.strided)}
        if not tensors:
            raise SourceError(f"{where}: holds only complex or sparse tensors, no real dense weights")
    return tensors


_WEIGHTS = "pass a weights file: torch.save(model.state_dict(), PATH) (.pt/.pth) or a .safetensors file"
_SNIFF = 4096  # bytes read to recognise a file


def _is_text(head: bytes) -> bool:
    import codecs

    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 32 and c not in "\t\n\r\f" for c in text)


def sniff(head: bytes, size: int) -> str:
    """What a file is, from its first bytes (``head``) and its ``size``.

    Returns one of ``"empty"``, ``"template"`` (a polarnet ``.plt``), ``"proportions"``
    (a polarnet proportions JSON), ``"json"``, ``"safetensors"``, ``"zip"`` and ``"pickle"``
    (what ``torch.save`` writes), ``"numpy"``, ``"gzip"``, ``"text"`` or ``"unknown"``.

    Example:
        >>> sniff(b"PLRTMPL\\n\\x01\\x00", 100), sniff(b'{"format": "polarnet-proportions"}', 34)
        ('template', 'proportions')
        >>> sniff(b"root:x:0:0:root:/root:/bin/bash\\n", 32), sniff(b"PK\\x03\\x04", 4000)
        ('text', 'zip')
    """
    if size == 0 or not head:
        return "empty"
    if head.startswith(b"PLRTMPL\n"):
        return "template"
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= size - 8:
            return "safetensors"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    if head.startswith(b"\x93NUMPY"):
        return "numpy"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if _is_text(head):
        start = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
        if start in (b"{", b"["):
            return "proportions" if b'"polarnet-proportions"' in head else "json"
        return "text"
    return "unknown"


def _refusal(path: Path, kind: str, head: bytes) -> str | None:
    """The one-line error for a file that is certainly not weights, else ``None``."""
    if kind == "empty":
        return f"{path}: is empty (0 bytes), not a weights file; {_WEIGHTS}"
    if kind == "template":
        return (f"{path}: is a polarnet template file (.plt): it carries signs only, not weights; use it as a study "
                f"source directly (named *.plt) or read it with `polarnet template info`, or {_WEIGHTS}")
    if kind == "proportions":
        return (f"{path}: is a polarnet proportions file (JSON): it carries per-layer sign proportions only, not "
                f"weights; use it as a condition's `proportions` file, or {_WEIGHTS}")
    if kind == "json":
        return f"{path}: is a JSON file, not weights; {_WEIGHTS}"
    if kind == "numpy":
        return f"{path}: is a NumPy array file (.npy), not a state dict; {_WEIGHTS}"
    if kind == "gzip":
        return f"{path}: is gzip-compressed; decompress it (gunzip) and pass the file inside"
    if kind == "text":
        first = head.decode("utf-8", "replace").strip().splitlines()[0][:40] if head.strip() else ""
        return f"{path}: cannot read weights: it is a text file (it starts {first!r}), not weights; {_WEIGHTS}"
    return None


def _torch_problem(e: Exception) -> str:
    """torch's message for an unreadable file, cut to its point: never its advice to retry with
    ``weights_only=False`` (unsafe; polarnet does not unpickle arbitrary objects)."""
    text = str(e)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (f"it holds Python objects besides tensors ({found.group(1)}), which polarnet does not unpickle "
                f"because unpickling can run code; from a copy you trust, save only the weights: "
                f"torch.save(checkpoint['state_dict'], 'weights.pt')")
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln]
    detail = lines[0] if lines else ""
    detail = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", detail)
    detail = detail.split(". ")[0].rstrip(".")
    if len(detail) > 120:
        detail = detail[:117] + "…"
    return f"damaged, or not a PyTorch or safetensors weights file ({type(e).__name__}{': ' + detail if detail else ''})"


def load_state_dict(source: str | os.PathLike[str], *, progress: bool = True) -> dict[str, Tensor]:
    """Read weights from a file, a torchvision weights name, a timm model or a Hugging Face repo, on the CPU.

    Args:
        source: a ``.pt``/``.pth``/``.bin``/``.ckpt`` (``torch.save`` of a state dict or of a
            checkpoint dict holding ``state_dict``/``model``), a ``.safetensors`` file, a
            torchvision weights name like ``AlexNet_Weights.IMAGENET1K_V1``, ``timm:MODEL``
            (a timm model name, optionally with its pretrained tag: ``timm:resnet18.a1_in1k``;
            needs timm) or ``hf:ORG/NAME`` / ``hf:ORG/NAME@REVISION`` (a Hugging Face model
            repo's weights file). An existing file of that name is read as a file.
        progress: show the download progress bar (torch hub downloads).

    Returns:
        ``{name: tensor}``; complex and sparse tensors are left out with a warning. For
        ``timm:`` the names are those of ``timm.create_model(MODEL).state_dict()``; for ``hf:``
        those in the repo's file (e.g. ``bert.encoder.layer.0.attention.self.query.weight``).

    Raises:
        SourceError: no source given; the file is missing, unreadable or not a regular file
            (a directory, FIFO, device); it is not weights (a template, JSON or text file,
            see :func:`sniff`) or holds other Python objects; the name is unknown (with close
            names); or the weights can't be downloaded and are not in the cache (naming the
            cache folder and the file expected). Always one line that names the source and
            what to pass instead.

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "w.pt")
        >>> torch.save(torch.nn.Linear(2, 1).state_dict(), f)
        >>> sorted(load_state_dict(f))
        ['bias', 'weight']
    """
    if source is None or (isinstance(source, str) and not source.strip()):
        raise SourceError(f"no source given ({source!r}); pass {_NAMES}")
    path = Path(source)
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, or not a path at all: maybe a weights name
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise SourceError(f"{path}: is {kind}, not a weights file; give a .pt/.pth/.safetensors file")
    if mode is not None:
        return _read_file(path)
    text = str(source)
    if text.startswith(_TIMM):
        return _timm_weights(text, progress)
    if text.startswith(_HF):
        return _hf_weights(text)
    if _WEIGHTS_NAME.match(text):
        return _torchvision_weights(text, progress)
    raise SourceError(f"{text!r} is neither an existing file nor a weights name; pass {_NAMES}")


def _read_file(path: Path) -> dict[str, Tensor]:
    try:  # non-blocking, and checked again: the path may have become a FIFO since the stat
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            head = os.read(fd, _SNIFF) if stat.S_ISREG(st.st_mode) else None
        finally:
            os.close(fd)
    except OSError as e:
        raise SourceError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
    if head is None:
        raise SourceError(f"{path}: is not a regular file, not a weights file; give a .pt/.pth/.safetensors file")
    size = st.st_size
    kind = sniff(head, size)
    refusal = _refusal(path, kind, head)
    if refusal:
        raise SourceError(refusal)
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            return _unwrap(load_file(str(path), device="cpu"), str(path))
        with open(path, "rb") as f:  # a file object: torch picks no loader by the name's suffix
            return _unwrap(torch.load(f, map_location="cpu", weights_only=True), str(path))
    except SourceError:
        raise
    except Exception as e:  # torch and safetensors raise many kinds for a bad file
        if kind == "unknown":
            what = (f"not a PyTorch (torch.save) or safetensors weights file (it starts with bytes "
                    f"{head[:8].hex(' ')}); {_WEIGHTS}")
        elif kind == "safetensors":
            what = f"a damaged safetensors file ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"
        else:
            what = _torch_problem(e)
        raise SourceError(f"{path}: cannot read weights: {what}") from None


def _torchvision_weights(name: str, progress: bool) -> dict[str, Tensor]:
    from torchvision.models import get_weight

    try:
        weights = get_weight(name)
    except (ValueError, KeyError, AttributeError) as e:
        raise SourceError(f"unknown torchvision weights {name!r} ({e})") from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
    try:
        return _unwrap(weights.get_state_dict(progress=progress), name)
    except (urllib.error.URLError, OSError, RuntimeError) as e:
        raise SourceError(
            f"cannot download {name} from {weights.url} ({type(e).__name__}: {e}). Without internet, put the "
            f"file at {cached} (the torch hub cache; set TORCH_HOME to move it) or pass a state-dict file instead (in a study: --set source=FILE)"
        ) from None


# --------------------------------------------------------------------------- caches and the network

_PROBE_SECONDS = 5.0  # how long a host may take to accept a connection before it counts as unreachable


def _unreachable(url: str, timeout: float = _PROBE_SECONDS) -> str | None:
    """Why ``url``'s host (or the proxy for it) can't be reached, or ``None`` once a TCP connection opens.

    A short probe before any download: without a network, huggingface_hub retries for about
    half a minute per file and urllib may wait much longer.
    """
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_parts.hostname or host, proxy_parts.port or 8080
    outcome: list[OSError | None] = []

    def connect() -> None:  # in a thread: the name lookup has no timeout of its own
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(e)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        return f"{host}:{port} did not answer in {timeout:g} s"
    error = outcome[0]
    return None if error is None else f"{host}:{port}: {error.strerror or error}"


def _hf_cache() -> Path:
    """The Hugging Face hub cache as the environment names it now (huggingface_hub reads it once, at import)."""
    env = os.environ
    caches = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    home = env.get("HF_HOME") or os.path.join(caches, "huggingface")
    hub = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or os.path.join(home, "hub")
    return Path(os.path.expandvars(os.path.expanduser(hub)))


def _hf_offline() -> str | None:
    """The setting that keeps the hub offline (``HF_HUB_OFFLINE=1``), if one does."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().upper() in ("1", "ON", "YES", "TRUE"):
            return f"{var}={os.environ[var]}"
    from huggingface_hub import constants

    return "HF_HUB_OFFLINE (set when huggingface_hub was imported)" if constants.HF_HUB_OFFLINE else None


def _hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _first_line(e: BaseException, limit: int = 160) -> str:
    text = str(e).strip().splitlines()
    detail = text[0] if text else ""
    return f"{type(e).__name__}{': ' + detail[:limit] if detail else ''}"


def _hub_miss(source: str, repo: str, revision: str | None, names: Sequence[str], cache: Path, why: str,
              also: str = "") -> SourceError:
    """The error for a file that is neither in the cache nor downloadable: where it is expected, how to put it there."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    files = [n for n in names if not n.endswith(".index.json")]
    sharded = " (or the shards its *.index.json lists)" if len(files) < len(names) else ""
    commit = revision if revision and re.fullmatch(r"[0-9a-f]{40}", revision) else None
    where = (f"{folder}/snapshots/{commit}/{files[0]}" if commit else
             f"{folder}/snapshots/COMMIT/{files[0]} with {folder}/refs/{revision or 'main'} holding COMMIT")
    cached = sorted(p.name[len("models--"):].replace("--", "/", 1) for p in cache.glob("models--*")) \
        if cache.is_dir() else []
    close = [c for c in difflib.get_close_matches(repo, cached, n=3, cutoff=0.6) if c != repo]
    return SourceError(
        f"{source}: {repo}'s {' or '.join(files)}{sharded} is not in the Hugging Face cache {cache}, and {why}. "
        f"It is expected at {where}: on a machine with internet run `hf download {repo} {files[0]}"
        f"{' --revision ' + revision if revision else ''} --cache-dir DIR` and copy DIR/{folder.name} into {cache} "
        f"(HF_HUB_CACHE or HF_HOME choose the cache){also}"
        f"{'; cached repos with close names: ' + ', '.join(close) if close else ''}"
    )


def _hub_file(source: str, repo: str, revision: str | None, names: Sequence[str], also: str = "") -> Path:
    """The local path of the first of ``names`` that ``repo`` has at ``revision``, from the
    Hugging Face cache, downloaded into it when the hub can be reached.

    ``also``: more advice for the error when the file can't be had.
    """
    try:
        from huggingface_hub import errors, hf_hub_download, try_to_load_from_cache
        from huggingface_hub.utils import validate_repo_id
    except ImportError:
        raise SourceError(f"{source}: needs huggingface_hub: pip install 'polarnet[hf]'") from None

    try:
        validate_repo_id(repo)
    except errors.HFValidationError as e:
        detail = str(e).strip().split(". ")[0].rstrip(".")
        raise SourceError(f"{source}: {repo!r} is not a Hugging Face model repo id ({detail}); write ORG/NAME, "
                          f"e.g. hf:prajjwal1/bert-tiny") from None
    cache = _hf_cache()
    cached = None
    for name in names:
        hit = try_to_load_from_cache(repo, name, cache_dir=cache, revision=revision)
        if isinstance(hit, str):
            cached = Path(hit)
            break
    offline = _hf_offline()
    endpoint = _hf_endpoint()
    unreachable = None if offline else _unreachable(endpoint)
    if offline or unreachable:
        if cached is not None:
            return cached
        why = f"{offline} forbids downloading" if offline else f"the hub {endpoint} can't be reached ({unreachable})"
        raise _hub_miss(source, repo, revision, names, cache, why, also)
    at = f"{repo}@{revision}" if revision else repo
    for name in names:
        try:
            return Path(hf_hub_download(repo, name, revision=revision, cache_dir=cache, endpoint=endpoint))
        except errors.GatedRepoError:
            raise SourceError(f"{source}: {repo} is gated: accept its terms on {endpoint}/{repo} and log in "
                              f"(`hf auth login`), or pass a weights file") from None
        except errors.RepositoryNotFoundError:
            raise SourceError(f"{source}: no model repo {repo!r} on {endpoint} (or it is private: log in with "
                              f"`hf auth login`); check the name, e.g. hf:prajjwal1/bert-tiny") from None
        except errors.RevisionNotFoundError:
            raise SourceError(f"{source}: {repo} has no revision {revision!r} (a branch, tag or commit); "
                              f"drop @{revision} for main") from None
        except errors.LocalEntryNotFoundError as e:  # the network failed after the probe
            failure: Exception = e
        except errors.EntryNotFoundError:  # the repo has no such file: try the next
            continue
        except Exception as e:  # the server failed, or the disk
            failure = e
        if cached is not None:
            return cached
        raise _hub_miss(source, repo, revision, names, cache, f"downloading it failed ({_first_line(failure)})",
                        also)
    files = [n for n in names if not n.endswith(".index.json")]
    raise SourceError(f"{source}: {at} has no {' or '.join(files)}; polarnet reads PyTorch weights "
                      f"(safetensors or torch.save files), so download the file you want and pass it")


# --------------------------------------------------------------------------- hf:REPO

_HF_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def _hf_weights(source: str) -> dict[str, Tensor]:
    """``hf:ORG/NAME[@REVISION]``: the repo's weights file (or its shards) from the Hugging Face cache."""
    spec = source[len(_HF):].strip()
    repo, at, revision = spec.partition("@")
    if not repo or (at and not revision):
        raise SourceError(f"{source!r}: name a Hugging Face model repo: hf:ORG/NAME or hf:ORG/NAME@REVISION, "
                          f"e.g. hf:prajjwal1/bert-tiny")
    path = _hub_file(source, repo, revision or None, _HF_FILES)
    if not path.name.endswith(".index.json"):
        return _read_file(path)
    try:  # sharded: the index maps each tensor to its shard; the shards are read at the index's commit
        weight_map = json.loads(path.read_text())["weight_map"]
        shards = list(dict.fromkeys(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise SourceError(f"{source}: {path}: not a sharded-checkpoint index ({_first_line(e, 100)})") from None
    commit = path.parent.name
    state: dict[str, Tensor] = {}
    for shard in shards:
        state.update(_read_file(_hub_file(source, repo, commit, (shard,))))
    return state


# --------------------------------------------------------------------------- timm:MODEL

def _safe_alternatives(filename: str) -> tuple[str, ...]:
    """The safetensors files timm tries before a ``.bin`` on the hub (as timm's ``_get_safe_alternatives``)."""
    if filename == "pytorch_model.bin":
        return ("model.safetensors",)
    if filename == "open_clip_pytorch_model.bin":
        return ("open_clip_model.safetensors",)
    return (filename[:-4] + ".safetensors",) if filename.endswith(".bin") else ()


def _timm_config(source: str, name: str) -> tuple[str, Any]:
    """The current name for ``name`` (deprecated names move) and the pretrained config timm uses for
    it (a ``timm.models.PretrainedCfg``); a SourceError with close names for an unknown one."""
    import timm
    from timm.models import get_deprecated_models, get_pretrained_cfg, is_model

    deprecated = get_deprecated_models()
    if name in deprecated:
        if deprecated[name] is None:
            raise SourceError(f"{source}: timm {timm.__version__} removed {name!r}; find its successor with "
                              f"timm.list_pretrained('{name.split('_')[0]}*')")
        name = deprecated[name]
    arch, _, tag = name.partition(".")
    if not is_model(arch):
        known = timm.list_models() + timm.list_pretrained()
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        raise SourceError(f"{source}: timm {timm.__version__} has no model {arch!r}"
                          f"{'; close names: ' + ', '.join(close) if close else ''} "
                          f"(timm.list_pretrained('{arch[:4]}*') lists the names with weights)")
    with_weights = timm.list_pretrained(f"{arch}.*")
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:  # a tag the architecture doesn't have
        cfg = None
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        what = f"no pretrained weights {name!r}" if tag else f"no pretrained weights for {arch!r}"
        close = difflib.get_close_matches(name, with_weights, n=5, cutoff=0.0) if tag else with_weights[:5]
        raise SourceError(f"{source}: timm {timm.__version__} has {what}"
                          f"{'; it has ' + ', '.join(close) if close else ''}"
                          f"{'' if close else '; timm.list_pretrained() lists the models with weights'}")
    return name, cfg


def _timm_weights(source: str, progress: bool) -> dict[str, Tensor]:
    """``timm:MODEL``: timm's pretrained weights for the model, found in the caches (or downloaded) as
    timm finds them, loaded by timm into the model (with its remapping), as the model's state dict."""
    name = source[len(_TIMM):].strip()
    try:
        import timm
    except ImportError:
        raise SourceError(f"{source}: needs timm: pip install 'polarnet[timm]'") from None
    if not name:
        raise SourceError(f"{source!r}: name a timm model: timm:MODEL or timm:MODEL.TAG, e.g. timm:resnet18.a1_in1k")
    if "/" in name or ":" in name:
        raise SourceError(f"{source}: timm:MODEL takes a timm model name such as resnet18.a1_in1k "
                          f"(timm.list_pretrained() lists them); for a Hugging Face repo's weights use hf:ORG/NAME")
    name, cfg = _timm_config(source, name)
    url, url_file = (cfg.url if isinstance(cfg.url, (list, tuple)) else (cfg.url, None)) if cfg.url else (None, None)
    torch_cached = (Path(torch.hub.get_dir()) / "checkpoints" /
                    (url_file or os.path.basename(urllib.parse.urlsplit(url).path))) if url else None
    old_cache = (os.environ.get("TIMM_USE_OLD_CACHE", "").strip() not in ("", "0") and torch_cached is not None
                 and torch_cached.is_file())  # as timm: an old torch hub download first, if asked
    if cfg.file and not cfg.hf_hub_id and not url:
        path, custom = Path(cfg.file), bool(cfg.custom_load)
    elif cfg.hf_hub_id and not old_cache:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        if cfg.hf_hub_filename:
            custom = cfg.custom_load == "hf"
            names = ((() if custom else _safe_alternatives(cfg.hf_hub_filename)) + (cfg.hf_hub_filename,))
        else:
            custom, names = False, ("model.safetensors", "pytorch_model.bin")
        also = (f", or put {url} in {torch_cached.parent} (the torch hub cache; TORCH_HOME moves it) and set "
                f"TIMM_USE_OLD_CACHE=1") if torch_cached else ""
        path = _hub_file(source, repo, revision or None, names, also)
    else:
        assert url is not None and torch_cached is not None
        path, custom = torch_cached, bool(cfg.custom_load)
        if not path.is_file():
            unreachable = _unreachable(url)
            hint = (f"Without internet, put the file at {path} (the torch hub cache; set TORCH_HOME to move it) "
                    f"or pass a state-dict file instead")
            if unreachable:
                raise SourceError(f"{source}: cannot download {url} ({unreachable}). {hint}")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(url, str(path), progress=progress)
            except Exception as e:
                raise SourceError(f"{source}: cannot download {url} ({_first_line(e)}). {hint}") from None
    try:
        with torch.random.fork_rng(devices=[]):  # the model's random init must not move the caller's RNG
            model = timm.create_model(name, pretrained=True,
                                      pretrained_cfg_overlay={"file": str(path), "custom_load": custom})
    except Exception as e:
        raise SourceError(f"{source}: timm could not load its weights from {path} ({_first_line(e)}); if the file "
                          f"is damaged, delete it so that it is downloaded again") from None
    return _unwrap(model.state_dict(), source)
