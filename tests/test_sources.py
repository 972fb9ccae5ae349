from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import polarnet as pn


@pytest.fixture
def weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2)).state_dict()


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_torch_save_files(tmp_path, weights, suffix) -> None:
    path = tmp_path / f"w{suffix}"
    torch.save(weights, path)
    loaded = pn.load_state_dict(path)
    assert list(loaded) == list(weights) and all(torch.equal(loaded[k], weights[k]) for k in weights)


def test_checkpoint_wrapping_a_state_dict(tmp_path, weights) -> None:
    torch.save({"epoch": 3, "state_dict": weights}, tmp_path / "ckpt.pt")
    assert torch.equal(pn.load_state_dict(tmp_path / "ckpt.pt")["2.weight"], weights["2.weight"])


def test_safetensors(tmp_path, weights) -> None:
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp_path / "w.safetensors"))
    assert torch.equal(pn.load_state_dict(tmp_path / "w.safetensors")["0.weight"], weights["0.weight"])


def test_unreadable_and_wrong_files(tmp_path) -> None:
    (tmp_path / "bad.pt").write_bytes(b"not a pickle")
    with pytest.raises(pn.SourceError, match="bad.pt: cannot read weights"):
        pn.load_state_dict(tmp_path / "bad.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(pn.SourceError, match="no state dict"):
        pn.load_state_dict(tmp_path / "list.pt")
    with pytest.raises(pn.SourceError, match="neither an existing file"):
        pn.load_state_dict(tmp_path / "missing.pt")


def test_unknown_torchvision_name() -> None:
    with pytest.raises(pn.SourceError, match="unknown torchvision weights"):
        pn.load_state_dict("NoSuchNet_Weights.IMAGENET1K_V1")


def test_torchvision_name_reads_the_hub_cache(tmp_path, monkeypatch, weights) -> None:
    """The real loading path: torchvision's weights enum and torch hub, offline from the cache."""
    from torchvision.models import AlexNet_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(weights, cache / os.path.basename(AlexNet_Weights.IMAGENET1K_V1.url))
    loaded = pn.load_state_dict("AlexNet_Weights.IMAGENET1K_V1", progress=False)
    assert torch.equal(loaded["0.weight"], weights["0.weight"])


def test_torchvision_name_offline_says_where_to_put_the_file(tmp_path, monkeypatch) -> None:
    import urllib.error

    import torchvision.models._api as api

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    expected = str(tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    with pytest.raises(pn.SourceError, match="cannot download") as err:
        pn.load_state_dict("AlexNet_Weights.IMAGENET1K_V1", progress=False)
    assert expected in str(err.value)


def test_non_regular_files_are_refused_at_once(tmp_path) -> None:
    with pytest.raises(pn.SourceError, match="is a directory, not a weights file"):
        pn.load_state_dict(tmp_path)
    fifo = tmp_path / "w.pt"
    os.mkfifo(fifo)
    with pytest.raises(pn.SourceError, match="w.pt: is a FIFO, not a weights file"):
        pn.load_state_dict(fifo)
    with pytest.raises(pn.SourceError, match="/dev/zero: is a device, not a weights file"):
        pn.load_state_dict("/dev/zero")


@pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants")
def test_complex_and_sparse_tensors_are_left_out_with_a_warning(tmp_path, weights) -> None:
    f = tmp_path / "w.pt"
    torch.save({**weights, "fft.weight": torch.ones(2, 2, dtype=torch.cfloat), "adj.weight": torch.eye(3).to_sparse()}, f)
    with pytest.warns(UserWarning, match="left out 2 tensor\\(s\\).*'fft.weight' \\(complex\\).*'adj.weight' \\(torch.sparse_coo\\)"):
        loaded = pn.load_state_dict(f)
    assert list(loaded) == list(weights)
    # so a template of "all" layers can be made from the file
    assert list(pn.PolarityTemplate.from_model(loaded)) == ["0.weight", "2.weight"]


def test_only_complex_tensors_is_an_error(tmp_path) -> None:
    f = tmp_path / "c.pt"
    torch.save({"w": torch.ones(2, 2, dtype=torch.cfloat)}, f)
    with pytest.raises(pn.SourceError, match="only complex or sparse"), pytest.warns(UserWarning):
        pn.load_state_dict(f)


# --------------------------------------------------------------------------- not weights (issue 8, finding 16)
def _one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and "weights_only" not in text, text
    return text


def test_a_template_file_is_named_as_one_whatever_its_suffix(tmp_path) -> None:
    for name in ("t.plt", "t.pt"):
        pn.PolarityTemplate.random(nn.Linear(3, 2)).save(tmp_path / name)
        with pytest.raises(pn.SourceError) as err:
            pn.load_state_dict(tmp_path / name)
        assert _one_line(err).startswith(f"{tmp_path / name}: is a polarnet template file (.plt): it carries signs only")
        assert "study source" in str(err.value)


def test_json_files_are_named(tmp_path) -> None:
    from polarnet.proportions import save_proportions

    save_proportions({"0.weight": (0.0, 0.5, 0.5)}, tmp_path / "p.json")
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(tmp_path / "p.json")
    assert "is a polarnet proportions file (JSON)" in _one_line(err) and "`proportions` file" in str(err.value)
    (tmp_path / "o.json").write_text('  [1, 2]\n')
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(tmp_path / "o.json")
    assert "is a JSON file, not weights" in _one_line(err)


@pytest.mark.parametrize("content,expected", [
    (b"", "is empty (0 bytes)"),
    (b"garbage\n", "it is a text file (it starts 'garbage'), not weights"),
    (b"\x93NUMPY\x01\x00", "is a NumPy array file"),
    (b"\x1f\x8b\x08\x00", "is gzip-compressed"),
    (b"\x7fELF\x02\x01\x01\x00" * 8, "not a PyTorch (torch.save) or safetensors weights file (it starts with bytes 7f 45 4c 46"),
])
def test_other_files_say_what_they_are_in_one_line(tmp_path, content, expected) -> None:
    (tmp_path / "x.pt").write_bytes(content)
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(tmp_path / "x.pt")
    assert expected in _one_line(err)
    if "gzip" not in expected:
        assert "torch.save(model.state_dict(), PATH)" in str(err.value)


def test_etc_passwd_is_a_text_file_not_an_index_error() -> None:
    if not os.path.isfile("/etc/passwd"):
        pytest.skip("no /etc/passwd")
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict("/etc/passwd")
    assert "/etc/passwd: cannot read weights: it is a text file" in _one_line(err)


def test_a_checkpoint_with_python_objects_is_refused_without_unsafe_advice(tmp_path) -> None:
    import argparse

    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": {"w": torch.zeros(2)}}, tmp_path / "ckpt.pt")
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(tmp_path / "ckpt.pt")
    assert "holds Python objects besides tensors (argparse.Namespace)" in _one_line(err)
    assert "torch.save(checkpoint['state_dict']" in str(err.value)


def test_a_damaged_torch_file_is_one_line(tmp_path, weights) -> None:
    torch.save(weights, tmp_path / "w.pt")
    raw = (tmp_path / "w.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(tmp_path / "cut.pt")
    assert _one_line(err).startswith(f"{tmp_path / 'cut.pt'}: cannot read weights: damaged, or not a PyTorch")


def test_files_are_read_by_content_not_suffix(tmp_path, weights) -> None:
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp_path / "st.bin"))
    torch.save(weights, tmp_path / "torch.safetensors")
    torch.save(weights, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    for name in ("st.bin", "torch.safetensors", "legacy.pth"):
        loaded = pn.load_state_dict(tmp_path / name)
        assert all(torch.equal(loaded[k], weights[k]) for k in weights), name


@pytest.mark.parametrize("source", ["", "   ", None])
def test_no_source_given(source) -> None:
    with pytest.raises(pn.SourceError, match="^no source given"):
        pn.load_state_dict(source)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- timm: and hf: (issue 11)
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def put_in_hub_cache(cache, repo: str, filename: str, tensors: dict[str, torch.Tensor], *, revision: str = "main",
                     commit: str = COMMIT, fmt: str = "safetensors"):
    """Place weights in a Hugging Face hub cache as huggingface_hub lays it out: the file in
    ``blobs/``, ``snapshots/<commit>/<filename>`` a link to it, ``refs/<revision>`` holding the commit."""
    import hashlib

    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    staged = folder / "blobs" / "staged"
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(staged))
    elif fmt == "torch":
        torch.save(tensors, staged)
    else:
        staged.write_text(fmt)  # raw text (an index)
    blob = folder / "blobs" / hashlib.sha256(staged.read_bytes()).hexdigest()
    staged.rename(blob)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / filename).symlink_to(os.path.relpath(blob, snapshot))
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / revision).write_text(commit)
    return snapshot / filename


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face hub cache that HF_HOME names, offline (HF_HUB_OFFLINE=1)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf" / "hub"


def test_weights_names_are_recognised() -> None:
    from polarnet.sources import is_weights_name

    assert all(is_weights_name(s) for s in ("AlexNet_Weights.IMAGENET1K_V1", "timm:resnet18", "hf:a/b"))
    assert not any(is_weights_name(s) for s in ("w.pt", "resnet18", "timm", "hf"))


TIMM_MODEL = "test_resnet.r160_in1k"  # a tiny model that timm has pretrained weights for (timm/test_resnet.r160_in1k)


def test_timm_name_reads_the_hub_cache(hf_cache) -> None:
    """The real path: timm's pretrained config names the hub repo; the file is read from the cache HF_HOME names."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(1)
    weights = timm.create_model(TIMM_MODEL, pretrained=False).state_dict()
    put_in_hub_cache(hf_cache, f"timm/{TIMM_MODEL}", "model.safetensors", weights)
    before = torch.get_rng_state()
    for name in (TIMM_MODEL, "test_resnet"):  # with its tag, and the architecture's default weights
        loaded = pn.load_state_dict(f"timm:{name}")
        assert list(loaded) == list(weights) and all(torch.equal(loaded[k], weights[k]) for k in weights)
    assert torch.equal(torch.get_rng_state(), before), "building the model must not move the global RNG"


def test_timm_reads_pytorch_model_bin_and_honours_hf_hub_cache(tmp_path, hf_cache, monkeypatch) -> None:
    timm = pytest.importorskip("timm")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))  # before HF_HOME, as huggingface_hub does
    weights = timm.create_model(TIMM_MODEL, pretrained=False).state_dict()
    put_in_hub_cache(tmp_path / "elsewhere", f"timm/{TIMM_MODEL}", "pytorch_model.bin", weights, fmt="torch")
    loaded = pn.load_state_dict(f"timm:{TIMM_MODEL}")
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)


def test_timm_offline_miss_names_the_cache_and_the_file(hf_cache) -> None:
    pytest.importorskip("timm")
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(f"timm:{TIMM_MODEL}")
    text = _one_line(err)
    folder = hf_cache / f"models--timm--{TIMM_MODEL}"
    assert text.startswith(f"timm:{TIMM_MODEL}: timm/{TIMM_MODEL}'s model.safetensors or pytorch_model.bin is not "
                           f"in the Hugging Face cache {hf_cache}, and HF_HUB_OFFLINE=1 forbids downloading")
    assert f"{folder}/snapshots/COMMIT/model.safetensors with {folder}/refs/main holding COMMIT" in text
    assert f"hf download timm/{TIMM_MODEL} model.safetensors --cache-dir DIR" in text


def test_timm_url_weights_read_the_torch_hub_cache(tmp_path, hf_cache, monkeypatch) -> None:
    """A model whose weights timm has only at a URL: torch hub's cache, which TORCH_HOME moves."""
    timm = pytest.importorskip("timm")
    name = "legacy_seresnet18.in1k"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    import polarnet.sources

    monkeypatch.setattr(polarnet.sources, "_unreachable", lambda url, timeout=0: "no network (test)")
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "seresnet18-4bb0ce65.pth"
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(f"timm:{name}")
    assert f"cannot download https://github.com/" in _one_line(err) and f"put the file at {expected}" in str(err.value)
    weights = timm.create_model(name, pretrained=False).state_dict()
    expected.parent.mkdir(parents=True)
    torch.save(weights, expected)
    loaded = pn.load_state_dict(f"timm:{name}")
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)


@pytest.mark.parametrize("name,expected", [
    ("resnet1800", "has no model 'resnet1800'; close names: resnet18, "),
    ("test_resnet.no_such_tag", f"has no pretrained weights 'test_resnet.no_such_tag'; it has {TIMM_MODEL}"),
    ("", "name a timm model: timm:MODEL or timm:MODEL.TAG"),
    ("hf-hub:timm/resnet18.a1_in1k", "for a Hugging Face repo's weights use hf:ORG/NAME"),
])
def test_unknown_timm_names_list_close_ones(hf_cache, name, expected) -> None:
    pytest.importorskip("timm")
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(f"timm:{name}")
    assert expected in _one_line(err)


def test_deprecated_timm_names_move_to_their_successor(hf_cache) -> None:
    timm = pytest.importorskip("timm")
    old, new = next(iter((k, v) for k, v in timm.models.get_deprecated_models().items() if v))
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(f"timm:{old}")
    repo = timm.models.get_pretrained_cfg(new).hf_hub_id
    assert f"{hf_cache}/models--{repo.replace('/', '--')}/snapshots/" in _one_line(err)


def test_timm_architecture_without_weights(hf_cache) -> None:
    timm = pytest.importorskip("timm")
    with_weights = {n.split(".")[0] for n in timm.list_pretrained()}
    bare = next(n for n in timm.list_models() if n not in with_weights)
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(f"timm:{bare}")
    assert f"has no pretrained weights for {bare!r}" in _one_line(err)


def test_hf_repo_safetensors_and_bin(hf_cache, weights) -> None:
    put_in_hub_cache(hf_cache, "org/net", "model.safetensors", weights)
    put_in_hub_cache(hf_cache, "org/old", "pytorch_model.bin", weights, fmt="torch")
    for repo in ("org/net", "org/old"):
        loaded = pn.load_state_dict(f"hf:{repo}")  # a safetensors file keeps its names sorted
        assert sorted(loaded) == sorted(weights) and all(torch.equal(loaded[k], weights[k]) for k in weights)


def test_hf_revision_branch_and_commit(hf_cache, weights) -> None:
    other = {k: -v for k, v in weights.items()}
    put_in_hub_cache(hf_cache, "org/net", "model.safetensors", weights)
    put_in_hub_cache(hf_cache, "org/net", "model.safetensors", other, revision="v2", commit="f" * 40)
    assert torch.equal(pn.load_state_dict("hf:org/net")["0.weight"], weights["0.weight"])
    assert torch.equal(pn.load_state_dict("hf:org/net@v2")["0.weight"], other["0.weight"])
    assert torch.equal(pn.load_state_dict(f"hf:org/net@{'f' * 40}")["0.weight"], other["0.weight"])
    with pytest.raises(pn.SourceError, match="org/net's model.safetensors or pytorch_model.bin .* is not in"):
        pn.load_state_dict("hf:org/net@v3")


def test_hf_sharded_checkpoint(hf_cache, weights) -> None:
    names = list(weights)
    shards = {"model-00001-of-00002.safetensors": names[:2], "model-00002-of-00002.safetensors": names[2:]}
    index = {"metadata": {}, "weight_map": {n: shard for shard, ns in shards.items() for n in ns}}
    put_in_hub_cache(hf_cache, "org/big", "model.safetensors.index.json", {}, fmt=json.dumps(index))
    for shard, ns in shards.items():
        put_in_hub_cache(hf_cache, "org/big", shard, {n: weights[n] for n in ns})
    loaded = pn.load_state_dict("hf:org/big")
    assert sorted(loaded) == sorted(weights) and all(torch.equal(loaded[k], weights[k]) for k in weights)


def test_hf_offline_miss_names_the_cache_and_close_repos(hf_cache, weights) -> None:
    put_in_hub_cache(hf_cache, "prajjwal1/bert-tiny", "model.safetensors", weights)
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict("hf:prajjwal1/bert-tinyy")
    text = _one_line(err)
    assert text.startswith("hf:prajjwal1/bert-tinyy: prajjwal1/bert-tinyy's model.safetensors or pytorch_model.bin "
                           f"(or the shards its *.index.json lists) is not in the Hugging Face cache {hf_cache}, "
                           f"and HF_HUB_OFFLINE=1 forbids downloading")
    assert f"{hf_cache}/models--prajjwal1--bert-tinyy/snapshots/COMMIT/model.safetensors" in text
    assert text.endswith("cached repos with close names: prajjwal1/bert-tiny")


@pytest.mark.parametrize("source,expected", [
    ("hf:", "name a Hugging Face model repo: hf:ORG/NAME"),
    ("hf:org/net@", "name a Hugging Face model repo: hf:ORG/NAME"),
    ("hf:a/b/c", "'a/b/c' is not a Hugging Face model repo id"),
])
def test_bad_hf_names(hf_cache, source, expected) -> None:
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict(source)
    assert expected in _one_line(err)


@pytest.fixture
def online(monkeypatch):
    """Online mode (no HF_HUB_OFFLINE) with the hub at HF_ENDPOINT; no proxy in the way."""
    import huggingface_hub.constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "http_proxy", "https_proxy", "all_proxy",
                "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_hub_fails_fast_or_uses_the_cache(hf_cache, online, monkeypatch, weights) -> None:
    import time

    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    start = time.monotonic()
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict("hf:org/net")
    assert time.monotonic() - start < 10
    assert f"is not in the Hugging Face cache {hf_cache}, and the hub http://127.0.0.1:" in _one_line(err)
    assert "can't be reached" in str(err.value)
    put_in_hub_cache(hf_cache, "org/net", "model.safetensors", weights)
    assert torch.equal(pn.load_state_dict("hf:org/net")["0.weight"], weights["0.weight"])


@pytest.fixture
def fake_hub(online, monkeypatch):
    """A local HTTP server that answers as the Hugging Face hub does for file downloads:
    ``{repo: {filename: bytes}}`` to fill; HF_ENDPOINT points at it."""
    import hashlib
    import http.server
    import threading

    repos: dict[str, dict[str, bytes]] = {}

    class Hub(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_HEAD(self, body: bool = False) -> None:
            repo, _, rest = self.path.lstrip("/").partition("/resolve/")
            filename = rest.partition("/")[2]
            data = repos.get(repo, {}).get(filename)
            self.send_response(200 if data is not None else 404)
            if data is None:
                self.send_header("X-Error-Code", "EntryNotFound" if repo in repos else "RepoNotFound")
                data = b""
            else:
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def do_GET(self) -> None:
            self.do_HEAD(body=True)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    yield repos
    server.shutdown()
    server.server_close()


def test_online_downloads_into_the_cache_the_environment_names(hf_cache, fake_hub, weights) -> None:
    from safetensors.torch import save

    safetensors = save({k: v.contiguous() for k, v in weights.items()})
    fake_hub["org/net"] = {"pytorch_model.bin": b"unused", "model.safetensors": safetensors}  # safetensors first
    loaded = pn.load_state_dict("hf:org/net")
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)
    assert (hf_cache / "models--org--net" / "snapshots" / COMMIT / "model.safetensors").is_file()
    assert (hf_cache / "models--org--net" / "refs" / "main").read_text() == COMMIT


def test_online_unknown_repo_and_repo_without_weights(hf_cache, fake_hub) -> None:
    fake_hub["org/text"] = {"README.md": b"# no weights"}
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict("hf:org/nope")
    assert "hf:org/nope: no model repo 'org/nope' on http://127.0.0.1:" in _one_line(err)
    with pytest.raises(pn.SourceError) as err:
        pn.load_state_dict("hf:org/text")
    assert "hf:org/text: org/text has no model.safetensors or pytorch_model.bin;" in _one_line(err)


def test_online_timm_downloads_from_the_hub(hf_cache, fake_hub) -> None:
    timm = pytest.importorskip("timm")
    from safetensors.torch import save

    weights = timm.create_model(TIMM_MODEL, pretrained=False).state_dict()
    fake_hub[f"timm/{TIMM_MODEL}"] = {"model.safetensors": save({k: v.contiguous() for k, v in weights.items()})}
    loaded = pn.load_state_dict(f"timm:{TIMM_MODEL}")
    assert list(loaded) == list(weights) and all(torch.equal(loaded[k], weights[k]) for k in weights)
    assert (hf_cache / f"models--timm--{TIMM_MODEL}" / "snapshots" / COMMIT / "model.safetensors").is_file()
