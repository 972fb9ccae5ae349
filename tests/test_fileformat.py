"""Tests for polarnet.fileformat: the .plt template file format."""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polarnet.fileformat import (
    FORMAT_VERSION,
    MAGIC,
    TemplateFileError,
    decode,
    encode,
    read_header,
    read_signs,
    write_signs,
)

PREFIX = 8 + 2 + 4  # magic, uint16 version, uint32 hlen
DIGEST = 32


def _reason(exc: pytest.ExceptionInfo, path) -> str:
    """The error message without the file path (tmp paths contain the test's name)."""
    msg = str(exc.value)
    assert str(path) in msg, "the message names the file"
    return msg.replace(str(path), "<file>")


def _hand_file(header: dict | bytes, payload: bytes, version: int = 1, magic: bytes = MAGIC, hlen: int | None = None) -> bytes:
    """Build a template file from the documented layout, independently of write_signs."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    body = magic + struct.pack("<H", version) + struct.pack("<I", len(h) if hlen is None else hlen) + h + payload
    return body + hashlib.sha256(body).digest()


def _signs(values, shape=None):
    t = torch.tensor(values, dtype=torch.int8)
    return t if shape is None else t.reshape(shape)


def _sample_file(tmp_path):
    signs = {
        "a.weight": _signs([1, -1, -1, 1, 1, 1, -1, 1, -1, -1], (2, 5)),  # no zeros: 1 bit
        "b.weight": _signs([0, 1, -1, 0, 0, 1], (3, 2)),  # zeros: 2 bits
    }
    path = write_signs(signs, tmp_path / "t.plt", meta={"seed": 3, "source": "random"})
    return signs, path


# --------------------------------------------------------------------------- encode / decode by hand


def test_encode_one_bit_by_hand():
    # bit set = negative, MSB first: 1,-1,-1,1 -> 0110 0000
    assert encode(_signs([1, -1, -1, 1])) == (1, bytes([0b0110_0000]))
    # 9 weights -> 2 bytes, last zero-padded: -1 x9 -> 1111 1111, 1000 0000
    assert encode(_signs([-1] * 9)) == (1, bytes([0xFF, 0x80]))
    assert encode(_signs([1] * 8)) == (1, bytes([0x00]))


def test_encode_two_bits_by_hand():
    # [0, 1, -1]: nonzero plane 011 -> 0110 0000, negative plane 001 -> 0010 0000
    assert encode(_signs([0, 1, -1])) == (2, bytes([0b0110_0000, 0b0010_0000]))
    # row-major order of a 2-D layer: [[1, 0], [-1, -1]] -> nonzero 1011, negative 0011
    assert encode(_signs([[1, 0], [-1, -1]])) == (2, bytes([0b1011_0000, 0b0011_0000]))
    # all zeros
    assert encode(_signs([0] * 10)) == (2, bytes([0, 0, 0, 0]))


def test_decode_by_hand():
    assert decode(1, bytes([0b0110_0000]), (4,)).tolist() == [1, -1, -1, 1]
    assert decode(1, bytes([0xFF, 0x80]), (3, 3)).tolist() == [[-1] * 3] * 3
    assert decode(2, bytes([0b1011_0000, 0b0011_0000]), (2, 2)).tolist() == [[1, 0], [-1, -1]]
    out = decode(2, bytes([0b0110_0000, 0b0010_0000]), (3,))
    assert out.dtype == torch.int8 and out.tolist() == [0, 1, -1]


def test_decode_wrong_length_and_bits():
    with pytest.raises(TemplateFileError, match="expected 1"):
        decode(1, b"\x00\x00", (4,))
    with pytest.raises(TemplateFileError, match="expected 4"):
        decode(2, b"\x00\x00", (3, 3))
    with pytest.raises(TemplateFileError, match="3 bits"):
        decode(3, b"\x00", (1,))


def test_decode_rejects_negative_zero():
    # weight 0 is "zero" in the nonzero plane but marked negative
    with pytest.raises(TemplateFileError, match="zero weight as negative"):
        decode(2, bytes([0b0100_0000, 0b1000_0000]), (2,))


@settings(max_examples=50, deadline=None)
@given(
    shape=st.lists(st.integers(0, 9), min_size=0, max_size=3),
    with_zeros=st.booleans(),
    seed=st.integers(0, 10**6),
)
def test_encode_decode_round_trip_and_size(shape, with_zeros, seed):
    n = math.prod(shape)
    rng = np.random.default_rng(seed)
    vals = rng.choice([-1, 0, 1] if with_zeros else [-1, 1], size=n)
    t = torch.from_numpy(vals.astype(np.int8)).reshape(shape)
    bits, data = encode(t)
    has_zero = bool((vals == 0).any())
    assert bits == (2 if has_zero else 1)
    assert len(data) == bits * ((n + 7) // 8)
    out = decode(bits, data, tuple(shape))
    assert out.dtype == torch.int8
    assert torch.equal(out, t)


# --------------------------------------------------------------------------- the file by hand


def test_written_file_layout_by_hand(tmp_path):
    signs, path = _sample_file(tmp_path)
    raw = path.read_bytes()
    assert raw[:8] == b"PLRTMPL\n"
    version, hlen = struct.unpack("<HI", raw[8:14])
    assert version == FORMAT_VERSION == 1
    header = json.loads(raw[14 : 14 + hlen].decode("utf-8"))
    assert header == {
        "layers": [
            {"name": "a.weight", "shape": [2, 5], "bits": 1, "nbytes": 2},
            {"name": "b.weight", "shape": [3, 2], "bits": 2, "nbytes": 2},
        ],
        "meta": {"seed": 3, "source": "random"},
    }
    payload = raw[14 + hlen : -32]
    # a: -1 at flat 1,2,6,8,9 -> 0110 0010 | 11(00 0000)
    # b: [0,1,-1,0,0,1] nonzero 0110 01(00), negative 0010 00(00)
    assert payload == bytes([0b0110_0010, 0b1100_0000, 0b0110_0100, 0b0010_0000])
    assert raw[-32:] == hashlib.sha256(raw[:-32]).digest()
    assert len(raw) == 14 + hlen + 4 + 32


def test_hand_built_file_is_read(tmp_path):
    header = {"layers": [{"name": "w", "shape": [2, 2], "bits": 2, "nbytes": 2}, {"name": "v", "shape": [3], "bits": 1, "nbytes": 1}],
              "meta": {"note": "by hand"}}
    payload = bytes([0b1011_0000, 0b0011_0000]) + bytes([0b1010_0000])
    f = tmp_path / "hand.plt"
    f.write_bytes(_hand_file(header, payload))
    signs, meta = read_signs(f)
    assert list(signs) == ["w", "v"]
    assert signs["w"].tolist() == [[1, 0], [-1, -1]]
    assert signs["v"].tolist() == [-1, 1, -1]
    assert meta == {"note": "by hand"}


def test_read_header_returns_header_and_payload(tmp_path):
    _, path = _sample_file(tmp_path)
    header, payload = read_header(path)
    assert [layer["name"] for layer in header["layers"]] == ["a.weight", "b.weight"]
    assert len(payload) == 4


def test_missing_meta_reads_as_empty(tmp_path):
    f = tmp_path / "m.plt"
    f.write_bytes(_hand_file({"layers": [{"name": "w", "shape": [1], "bits": 1, "nbytes": 1}]}, b"\x80"))
    signs, meta = read_signs(f)
    assert signs["w"].tolist() == [-1] and meta == {}


def test_write_is_atomic_and_overwrites(tmp_path):
    f = tmp_path / "t.plt"
    write_signs({"w": _signs([1, 1])}, f)
    write_signs({"w": _signs([-1, 0, 1])}, f)
    assert read_signs(f)[0]["w"].tolist() == [-1, 0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.plt"]  # no leftover temp file


def test_write_accepts_str_path_and_returns_path(tmp_path):
    out = write_signs({"w": _signs([1])}, str(tmp_path / "s.plt"))
    assert out == tmp_path / "s.plt" and out.exists()


# --------------------------------------------------------------------------- round trip and size (property)

_names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), min_size=1, max_size=10)
_meta_values = st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.text(max_size=10),
                         st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def _layers(draw):
    names = draw(st.lists(_names, min_size=0, max_size=4, unique=True))
    seed = draw(st.integers(0, 10**6))
    zero_mode = draw(st.sampled_from(["none", "some", "mixed"]))
    rng = np.random.default_rng(seed)
    out = {}
    for i, name in enumerate(names):
        shape = draw(st.lists(st.integers(1, 11), min_size=1, max_size=3))
        with_zeros = zero_mode == "some" or (zero_mode == "mixed" and i % 2 == 0)
        vals = rng.choice([-1, 0, 1] if with_zeros else [-1, 1], size=shape)
        out[name] = torch.from_numpy(np.asarray(vals, dtype=np.int8)).reshape(shape)
    return out


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(signs=_layers(), meta=st.dictionaries(st.text(max_size=6), _meta_values, max_size=3))
def test_round_trip_and_size(tmp_path, signs, meta):
    path = write_signs(signs, tmp_path / "t.plt", meta=meta)
    out, meta_out = read_signs(path)
    assert list(out) == list(signs)
    for k in signs:
        assert out[k].dtype == torch.int8
        assert torch.equal(out[k], signs[k])
    assert meta_out == meta
    # size: prefix + header + payload + digest, payload computed by hand
    raw = path.read_bytes()
    (hlen,) = struct.unpack("<I", raw[10:14])
    payload = 0
    bit_budget = 0
    for t in signs.values():
        n = t.numel()
        bits = 2 if bool((t == 0).any()) else 1
        payload += bits * ((n + 7) // 8)
        bit_budget += bits * n
    assert len(raw) == PREFIX + hlen + payload + DIGEST
    # never more than 2 bits per weight (1 without zeros) plus padding of < 1 byte per plane
    planes = sum(2 if bool((t == 0).any()) else 1 for t in signs.values())
    assert payload * 8 <= bit_budget + 7 * planes
    assert payload * 8 <= 2 * sum(t.numel() for t in signs.values()) + 14 * len(signs)


def test_size_of_a_large_layer(tmp_path):
    g = torch.Generator().manual_seed(0)
    no_zero = torch.where(torch.rand(1000, 37, generator=g) < 0.5, 1, -1).to(torch.int8)  # 37,000 weights
    with_zero = no_zero.clone()
    with_zero[0, 0] = 0
    for t, expected in ((no_zero, 4625), (with_zero, 9250)):  # ceil(37000/8) = 4625
        path = write_signs({"w": t}, tmp_path / "big.plt")
        raw = path.read_bytes()
        (hlen,) = struct.unpack("<I", raw[10:14])
        assert len(raw) - PREFIX - hlen - DIGEST == expected
        assert hlen < 100  # small header


def test_zero_dim_and_empty_layers_round_trip(tmp_path):
    signs = {"scalar": torch.tensor(-1, dtype=torch.int8), "empty": torch.zeros(0, 3, dtype=torch.int8), "z": torch.tensor(0, dtype=torch.int8)}
    out, _ = read_signs(write_signs(signs, tmp_path / "e.plt"))
    assert out["scalar"].shape == () and out["scalar"].item() == -1
    assert out["empty"].shape == (0, 3)
    assert out["z"].shape == () and out["z"].item() == 0


# --------------------------------------------------------------------------- corrupted files


def test_every_single_byte_flip_is_detected(tmp_path):
    _, path = _sample_file(tmp_path)
    raw = path.read_bytes()
    bad = tmp_path / "bad.plt"
    for i in range(len(raw)):
        for mask in (0x01, 0x80, 0xFF):
            corrupt = bytearray(raw)
            corrupt[i] ^= mask
            bad.write_bytes(bytes(corrupt))
            with pytest.raises(TemplateFileError):
                read_signs(bad)


def test_flip_in_payload_is_a_checksum_error(tmp_path):
    _, path = _sample_file(tmp_path)
    raw = bytearray(path.read_bytes())
    (hlen,) = struct.unpack("<I", raw[10:14])
    raw[PREFIX + hlen + 1] ^= 0x10  # inside the payload
    path.write_bytes(bytes(raw))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(path)
    assert "checksum mismatch" in _reason(exc, path)


def test_flip_in_header_is_a_checksum_error(tmp_path):
    _, path = _sample_file(tmp_path)
    raw = bytearray(path.read_bytes())
    i = raw.index(b'"shape":[2,5]') + len('"shape":[')
    raw[i] = ord("9")  # a plausible, still valid JSON header
    path.write_bytes(bytes(raw))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(path)
    assert "checksum mismatch" in _reason(exc, path)


def test_flip_in_digest_is_a_checksum_error(tmp_path):
    _, path = _sample_file(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(path)
    assert "checksum mismatch" in _reason(exc, path)


def test_truncation_at_every_length_is_detected(tmp_path):
    _, path = _sample_file(tmp_path)
    raw = path.read_bytes()
    bad = tmp_path / "cut.plt"
    for k in range(len(raw)):
        bad.write_bytes(raw[:k])
        with pytest.raises(TemplateFileError) as exc:
            read_signs(bad)
        assert "truncated" in _reason(exc, bad), k


@pytest.mark.parametrize("k", [0, 5, 8, 13, 14, 30])
def test_truncated_short_file_says_truncated_with_size(tmp_path, k):
    _, path = _sample_file(tmp_path)
    raw = path.read_bytes()
    path.write_bytes(raw[:k])
    with pytest.raises(TemplateFileError) as exc:
        read_signs(path)
    reason = _reason(exc, path)
    assert "truncated" in reason
    if k < PREFIX + 20:  # before the checksum can even be read
        assert f"({k} bytes)" in reason


def test_appended_bytes_are_detected(tmp_path):
    _, path = _sample_file(tmp_path)
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(TemplateFileError, match="checksum"):
        read_signs(path)


@pytest.mark.parametrize("version", [2, 7, 65535])
def test_newer_version_refused(tmp_path, version):
    f = tmp_path / "v.plt"
    # a perfectly valid file apart from its version number
    f.write_bytes(_hand_file({"layers": [{"name": "w", "shape": [1], "bits": 1, "nbytes": 1}], "meta": {}}, b"\x00", version=version))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    reason = _reason(exc, f)
    assert "newer" in reason and f"version {version}" in reason and "upgrade" in reason


def test_newer_version_with_another_layout_is_refused_as_newer(tmp_path):
    # a newer version may lay out its header differently; only the envelope (magic, version,
    # trailing SHA-256 of everything before it) is shared by every version
    f = tmp_path / "v2.plt"
    body = MAGIC + struct.pack("<H", 2) + b"something else entirely"
    f.write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    assert "newer" in _reason(exc, f) and "upgrade" in _reason(exc, f)


@pytest.mark.parametrize("bit", range(16))
def test_damaged_version_field_says_corrupted_not_newer(tmp_path, bit):
    _, f = _sample_file(tmp_path)
    raw = bytearray(f.read_bytes())
    version = struct.unpack_from("<H", raw, 8)[0] ^ (1 << bit)
    struct.pack_into("<H", raw, 8, version)
    f.write_bytes(bytes(raw))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    reason = _reason(exc, f)
    assert "corrupted" in reason and "newer" not in reason and "upgrade" not in reason


def test_version_zero_refused(tmp_path):
    f = tmp_path / "v0.plt"
    f.write_bytes(_hand_file({"layers": [], "meta": {}}, b"", version=0))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    assert "invalid template format version 0" in _reason(exc, f) and "corrupted" in _reason(exc, f)


@pytest.mark.parametrize(
    "content",
    [
        b"hello world, this is not a template file at all",
        b"PLRTMPX\n" + b"\x01\x00" + b"\x00" * 40,  # wrong magic, right length
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        b"{}",
        b"X",
    ],
)
def test_wrong_magic(tmp_path, content):
    f = tmp_path / "g.plt"
    f.write_bytes(content)
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    assert "bad magic" in _reason(exc, f)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200), with_magic=st.booleans())
def test_random_garbage_raises_template_file_error(tmp_path, data, with_magic):
    f = tmp_path / "garbage.plt"
    f.write_bytes((MAGIC if with_magic else b"") + data)
    with pytest.raises(TemplateFileError):
        read_signs(f)


def test_template_file_error_is_value_error():
    assert issubclass(TemplateFileError, ValueError)


# --------------------------------------------------------------------------- checksummed but inconsistent files


def test_unreadable_header(tmp_path):
    f = tmp_path / "h.plt"
    f.write_bytes(_hand_file(b"\xff\xfe not json", b""))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    assert "unreadable header" in _reason(exc, f)


def test_nbytes_not_matching_shape(tmp_path):
    f = tmp_path / "n.plt"
    f.write_bytes(_hand_file({"layers": [{"name": "w", "shape": [9], "bits": 1, "nbytes": 1}], "meta": {}}, b"\x00"))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    reason = _reason(exc, f)
    assert "'w'" in reason and "expected 2" in reason


def test_trailing_payload_bytes(tmp_path):
    f = tmp_path / "tr.plt"
    f.write_bytes(_hand_file({"layers": [{"name": "w", "shape": [2], "bits": 1, "nbytes": 1}], "meta": {}}, b"\x40\x00\x00"))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    assert "2 unexpected trailing bytes" in _reason(exc, f)


def test_negative_zero_in_file_names_layer(tmp_path):
    f = tmp_path / "nz.plt"
    f.write_bytes(_hand_file({"layers": [{"name": "conv.weight", "shape": [2], "bits": 2, "nbytes": 2}], "meta": {}},
                             bytes([0b0100_0000, 0b1000_0000])))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    reason = _reason(exc, f)
    assert "'conv.weight'" in reason and "corrupted" in reason


def test_unknown_bits_in_file(tmp_path):
    f = tmp_path / "b.plt"
    f.write_bytes(_hand_file({"layers": [{"name": "w", "shape": [2], "bits": 4, "nbytes": 1}], "meta": {}}, b"\x00"))
    with pytest.raises(TemplateFileError, match="4 bits"):
        read_signs(f)


@pytest.mark.parametrize("header", [{"meta": {}}, [1, 2], {"layers": [{"name": "w"}]}])
def test_malformed_header_structure(tmp_path, header):
    f = tmp_path / "s.plt"
    f.write_bytes(_hand_file(header, b""))
    with pytest.raises(TemplateFileError):
        read_signs(f)


# --------------------------------------------------------------------------- only signs are written


@pytest.mark.parametrize(
    "bad, shown",
    [
        (torch.tensor([1.0, 0.5]), "0.5"),
        (torch.tensor([1.0, float("nan")]), "nan"),
        (torch.tensor([float("inf")]), "inf"),
        (torch.tensor([2, 1], dtype=torch.int64), "2"),
        (torch.tensor([255, 1], dtype=torch.uint8), "255"),
        (torch.tensor([-2], dtype=torch.int8), "-2"),
    ],
)
def test_write_signs_refuses_values_other_than_signs(tmp_path, bad, shown):
    with pytest.raises(ValueError) as exc:
        write_signs({"ok": _signs([1]), "fc.weight": bad}, tmp_path / "t.plt")
    assert "'fc.weight'" in str(exc.value) and shown in str(exc.value)
    assert not isinstance(exc.value, TemplateFileError)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temp file


@pytest.mark.parametrize("bad", [torch.tensor([True, False]), torch.tensor([1 + 0j, -1 + 0j])])
def test_encode_refuses_bool_and_complex(bad):
    with pytest.raises(ValueError, match="'w'.*(bool|complex)"):
        encode(bad, "w")


def test_encode_refuses_sparse():
    with pytest.raises(ValueError, match="'w'.*to_dense"):
        encode(torch.tensor([1, 0, -1]).to_sparse(), "w")


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.sampled_from([-1.0, 0.0, 1.0, -0.0]), min_size=1, max_size=40),
       dtype=st.sampled_from([torch.float16, torch.float32, torch.float64, torch.int8, torch.int16, torch.int32, torch.int64]))
def test_exact_signs_of_any_real_dtype_encode_like_int8(values, dtype):
    t = torch.tensor(values).to(dtype)
    assert encode(t) == encode(t.to(torch.int8))


@settings(max_examples=60, deadline=None)
@given(value=st.one_of(st.floats().filter(lambda v: v not in (-1.0, 0.0, 1.0)), st.integers(2, 255)))
def test_anything_but_an_exact_sign_is_refused(value):
    with pytest.raises(ValueError, match="exactly -1, 0 or \\+1"):
        encode(torch.tensor([1.0, value], dtype=torch.float64), "w")


# --------------------------------------------------------------------------- consistent headers only


def test_duplicate_layer_names_are_refused(tmp_path):
    f = tmp_path / "d.plt"
    layer = {"name": "w", "shape": [2], "bits": 1, "nbytes": 1}
    f.write_bytes(_hand_file({"layers": [layer, layer], "meta": {}}, b"\x40\x80"))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    assert "'w' appears twice" in _reason(exc, f)


@pytest.mark.parametrize("bits, payload", [(1, bytes([0b0100_0001])), (2, bytes([0b1100_0000, 0b0100_0100]))])
def test_set_padding_bits_are_refused(tmp_path, bits, payload):
    # 2 weights in a byte: the 6 low bits of each plane are padding and must be zero
    f = tmp_path / "p.plt"
    f.write_bytes(_hand_file({"layers": [{"name": "w", "shape": [2], "bits": bits, "nbytes": len(payload)}], "meta": {}}, payload))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    assert "'w'" in _reason(exc, f) and "padding" in _reason(exc, f)


def test_padding_of_a_full_byte_is_not_checked():
    assert decode(1, b"\xff", (8,)).tolist() == [-1] * 8


@pytest.mark.parametrize(
    "layer",
    [
        {"name": "w", "shape": [2**40, 2**40], "bits": 1, "nbytes": 1},
        {"name": "w", "shape": [2**40, 2**40], "bits": 1, "nbytes": 2**77},  # consistent, but not in the file
        {"name": "w", "shape": [2], "bits": 1, "nbytes": -1},
        {"name": "w", "shape": [2], "bits": 1, "nbytes": 3},
        {"name": "w", "shape": [-2], "bits": 1, "nbytes": 1},
        {"name": "w", "shape": [2], "bits": True, "nbytes": 1},
        {"name": "w", "shape": [True, 2], "bits": 1, "nbytes": 1},
        {"name": "w", "shape": [2.0], "bits": 1, "nbytes": 1},
        {"name": "w", "shape": [2], "bits": 1, "nbytes": 1.0},
    ],
)
def test_absurd_or_inconsistent_layer_sizes_are_refused_before_decoding(tmp_path, layer):
    f = tmp_path / "a.plt"
    f.write_bytes(_hand_file({"layers": [layer], "meta": {}}, b"\x00"))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    assert "<file>:" in _reason(exc, f) and len(str(exc.value).splitlines()) == 1


def test_payload_shorter_than_the_header_declares(tmp_path):
    f = tmp_path / "s.plt"
    f.write_bytes(_hand_file({"layers": [{"name": "w", "shape": [16], "bits": 1, "nbytes": 2}], "meta": {}}, b"\x00"))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    assert "declares 2 payload bytes" in _reason(exc, f)


@pytest.mark.parametrize("header", [b"[" * 100_000 + b"]" * 100_000, b'{"layers": [], "meta": {"x": ' + b"9" * 5000 + b"}}"])
def test_pathological_json_header_is_a_template_file_error(tmp_path, header):
    f = tmp_path / "deep.plt"
    f.write_bytes(_hand_file(header, b""))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    assert "unreadable header" in _reason(exc, f)


def test_header_length_past_the_end_is_corrupted(tmp_path):
    f = tmp_path / "h.plt"
    f.write_bytes(_hand_file({"layers": [], "meta": {}}, b"", hlen=10**6))
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    assert "runs past the end" in _reason(exc, f)


# --------------------------------------------------------------------------- only regular files


def test_reading_a_directory(tmp_path):
    with pytest.raises(TemplateFileError) as exc:
        read_signs(tmp_path)
    assert _reason(exc, tmp_path) == "<file>: is a directory, not a template file"


def test_reading_a_fifo_does_not_hang(tmp_path):
    f = tmp_path / "fifo.plt"
    os.mkfifo(f)
    with pytest.raises(TemplateFileError) as exc:
        read_signs(f)
    assert "is a FIFO" in _reason(exc, f)


def test_reading_a_device_does_not_read_forever():
    with pytest.raises(TemplateFileError, match="/dev/zero: is a device"):
        read_signs("/dev/zero")


def test_reading_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such template file"):
        read_signs(tmp_path / "missing.plt")


# --------------------------------------------------------------------------- failed writes leave nothing behind


def test_writing_to_a_directory_is_a_clear_error_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(TemplateFileError) as exc:
        write_signs({"w": _signs([1])}, target)
    assert "is a directory" in str(exc.value) and str(target) in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and list(target.iterdir()) == []


def test_failed_write_removes_the_temp_file(tmp_path, monkeypatch):
    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space"):
        write_signs({"w": _signs([1])}, tmp_path / "t.plt")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_names_the_file_asked_for_never_the_temporary_one(tmp_path) -> None:
    import errno

    from polarnet.fileformat import atomic_write

    target = tmp_path / "no" / "such" / "t.plt"
    with pytest.raises(FileNotFoundError) as e:
        atomic_write(target, lambda f: f.write(b"x"))
    assert (e.value.filename, e.value.strerror) == (str(target), f"the folder {target.parent} does not exist; "
                                                                 f"create it first, or write elsewhere")

    def full(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "t.plt"
    with pytest.raises(OSError) as e:
        atomic_write(target, full)
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(target)
    assert e.value.strerror == "No space left on device: free space there, or write elsewhere"
    assert os.listdir(tmp_path) == []  # neither the file nor the temporary one
