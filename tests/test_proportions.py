"""Tests for polarnet.proportions."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polarnet.proportions import (
    check_proportions,
    counts_from_proportions,
    load_proportions,
    save_proportions,
)

# exact triples: integer weights normalised, so the float sum is 1 up to rounding
_weights = st.tuples(st.integers(0, 1000), st.integers(0, 1000), st.integers(0, 1000)).filter(lambda t: sum(t) > 0)


def _triple(w):
    s = sum(w)
    return (w[0] / s, w[1] / s, w[2] / s)


# --------------------------------------------------------------------------- check_proportions


def test_check_returns_floats():
    out = check_proportions((0, 1, 0))
    assert out == (0.0, 1.0, 0.0)
    assert all(type(v) is float for v in out)
    assert check_proportions([0.5, 0.27, 0.23]) == (0.5, 0.27, 0.23)


def test_check_tolerance_boundary():
    # off by 5e-7: accepted; off by 2e-6: refused (either side)
    assert check_proportions((0.0, 0.5, 0.5 + 5e-7)) == (0.0, 0.5, 0.5 + 5e-7)
    assert check_proportions((0.0, 0.5, 0.5 - 5e-7)) == (0.0, 0.5, 0.5 - 5e-7)
    with pytest.raises(ValueError, match="sum to 1"):
        check_proportions((0.0, 0.5, 0.5 + 2e-6))
    with pytest.raises(ValueError, match="sum to 1"):
        check_proportions((0.0, 0.5, 0.5 - 2e-6))


def test_check_not_summing_to_one_names_layer_and_sum():
    with pytest.raises(ValueError) as exc:
        check_proportions((0.2, 0.2, 0.2), "conv3.weight")
    msg = str(exc.value)
    assert "conv3.weight" in msg
    assert "0.6" in msg  # the actual sum


def test_check_negative_entry():
    with pytest.raises(ValueError) as exc:
        check_proportions((-0.1, 0.6, 0.5), "fc.weight")
    msg = str(exc.value)
    assert "fc.weight" in msg and "non-negative" in msg and "-0.1" in msg


@pytest.mark.parametrize("bad", [(math.nan, 0.5, 0.5), (math.inf, 0.0, 0.0), (0.0, -math.inf, 1.0)])
def test_check_non_finite(bad):
    with pytest.raises(ValueError, match="finite"):
        check_proportions(bad)


@pytest.mark.parametrize("bad", [(0.5, 0.5), (0.25, 0.25, 0.25, 0.25), ()])
def test_check_wrong_length(bad):
    with pytest.raises(ValueError, match="three numbers"):
        check_proportions(bad, "L")


@pytest.mark.parametrize("bad", [None, 3.0, ("a", "b", "c"), (0.5, None, 0.5)])
def test_check_not_numbers(bad):
    with pytest.raises(ValueError, match="three numbers"):
        check_proportions(bad, "L")


# --------------------------------------------------------------------------- counts_from_proportions


@pytest.mark.parametrize(
    "p, n, expected",
    [
        ((0.5, 0.27, 0.23), 10, (5, 3, 2)),  # exact 5, 2.7, 2.3 -> remainder to 2.7
        ((1 / 3, 1 / 3, 1 / 3), 10, (4, 3, 3)),  # tie -> earliest entry
        ((1 / 3, 1 / 3, 1 / 3), 11, (4, 4, 3)),  # two ties -> two earliest
        ((0.25, 0.75, 0.0), 2, (1, 1, 0)),  # 0.5 / 1.5 tie -> earlier
        ((0.0, 0.0, 1.0), 7, (0, 0, 7)),
        ((0.1, 0.3, 0.6), 100, (10, 30, 60)),
        ((0.5, 0.25, 0.25), 0, (0, 0, 0)),
        ((0.2, 0.3, 0.5), 1, (0, 0, 1)),  # 0.2, 0.3, 0.5 -> largest remainder 0.5
        ((0.5, 0.3, 0.2), 23232, (11616, 6970, 4646)),  # 11616, 6969.6, 4646.4
    ],
)
def test_counts_hand_computed(p, n, expected):
    assert counts_from_proportions(p, n) == expected


def test_counts_validate_proportions():
    with pytest.raises(ValueError, match="sum to 1"):
        counts_from_proportions((0.5, 0.5, 0.5), 10)


def _round_half_up(x: float) -> int:
    f = math.floor(x)
    return f + (1 if x - f >= 0.5 else 0)


@settings(max_examples=50, deadline=None)
@given(w=_weights, n=st.integers(0, 10**6))
def test_counts_properties(w, n):
    p = _triple(w)
    counts = counts_from_proportions(p, n)
    assert sum(counts) == n
    for c, pi in zip(counts, p):
        x = pi * n
        assert math.floor(x) <= c <= math.ceil(x)
        assert c >= 0
    # whenever plain rounding already gives a total of n, it is the answer
    rounded = [_round_half_up(pi * n) for pi in p]
    if sum(rounded) == n:
        assert list(counts) == rounded


@settings(max_examples=50, deadline=None)
@given(w=_weights, n=st.integers(0, 10**4))
def test_counts_against_exact_rational_largest_remainder(w, n):
    # reference computed with exact integers: the share of entry i is w_i * n / S
    s = sum(w)
    floors = [wi * n // s for wi in w]
    rems = [wi * n - f * s for wi, f in zip(w, floors)]  # remainder numerators (over s)
    left = n - sum(floors)
    order = sorted(range(3), key=lambda i: (-rems[i], i))
    ref = list(floors)
    for i in order[:left]:
        ref[i] += 1
    got = counts_from_proportions(_triple(w), n)
    assert sum(got) == n
    # floats can only change the outcome where exact remainders tie
    if len(set(rems)) == 3 or left in (0, 3):
        assert list(got) == ref


@pytest.mark.parametrize(
    "p, n",
    [
        ((0.5, 0.5, 9e-7), 10**7),  # sums to 1 + 9e-7 (accepted); got (5000000, 5000000, 9)
        ((0.0, 0.5, 0.5 + 9e-7), 2 * 10**6),  # got (1, 1000000, 1000002): a p0 = 0 layer gets a zero
        ((0.5, 0.4999991, 0.0), 10**7),  # sums to 1 - 9e-7 (accepted); got (5000001, 4999992, 1)
    ],
)
def test_counts_sum_to_n_within_tolerance(p, n):
    check_proportions(p)  # valid input
    counts = counts_from_proportions(p, n)
    assert sum(counts) == n
    # an entry with proportion 0 never gets a weight
    assert all(c == 0 for c, pi in zip(counts, p) if pi == 0)


# --------------------------------------------------------------------------- save / load


def test_save_writes_documented_json(tmp_path):
    f = tmp_path / "p.json"
    out = save_proportions({"a.weight": (0, 0.5, 0.5), "b.weight": (0.5, 0.27, 0.23)}, f, numel={"a.weight": 12})
    assert out == f
    doc = json.loads(f.read_text())
    assert doc == {
        "format": "polarnet-proportions",
        "version": 1,
        "layers": {
            "a.weight": {"p0": 0.0, "p_neg": 0.5, "p_pos": 0.5, "numel": 12},
            "b.weight": {"p0": 0.5, "p_neg": 0.27, "p_pos": 0.23},
        },
    }


def test_save_load_round_trip_small(tmp_path):
    f = tmp_path / "p.json"
    props = {"features.0.weight": (0.0, 0.5, 0.5), "features.3.weight": (0.5, 0.27, 0.23)}
    save_proportions(props, str(f))
    loaded = load_proportions(str(f))
    assert loaded == props
    assert list(loaded) == list(props)


@settings(max_examples=50, deadline=None)
@given(
    table=st.dictionaries(st.text(min_size=1, max_size=12), _weights.map(_triple), min_size=0, max_size=5),
)
def test_save_load_round_trip_property(tmp_path_factory, table):
    f = tmp_path_factory.mktemp("p") / "p.json"
    save_proportions(table, f)
    assert load_proportions(f) == table


def test_save_refuses_invalid_and_writes_nothing(tmp_path):
    f = tmp_path / "p.json"
    with pytest.raises(ValueError) as exc:
        save_proportions({"ok": (0, 0.5, 0.5), "bad.weight": (0.1, 0.1, 0.1)}, f)
    assert "bad.weight" in str(exc.value)
    assert not f.exists()


def _write(path, doc):
    path.write_text(json.dumps(doc))
    return path


def test_load_newer_version(tmp_path):
    f = _write(
        tmp_path / "p.json",
        {"format": "polarnet-proportions", "version": 2, "layers": {"w": {"p0": 0, "p_neg": 0.5, "p_pos": 0.5}}},
    )
    with pytest.raises(ValueError) as exc:
        load_proportions(f)
    msg = str(exc.value)
    assert str(f) in msg
    msg = msg.replace(str(f), "<file>")  # the tmp path itself may contain these words
    assert "newer" in msg and "version 2" in msg


def test_load_newer_version_with_other_layout(tmp_path):
    f = _write(tmp_path / "p.json", {"format": "polarnet-proportions", "version": 2, "layers": [["w", 0, 0.5, 0.5]]})
    with pytest.raises(ValueError) as exc:
        load_proportions(f)
    assert "newer" in str(exc.value).replace(str(f), "<file>")


@pytest.mark.parametrize("missing", ["p0", "p_neg", "p_pos"])
def test_load_missing_key_names_layer(tmp_path, missing):
    entry = {"p0": 0.0, "p_neg": 0.5, "p_pos": 0.5}
    del entry[missing]
    f = _write(tmp_path / "p.json", {"format": "polarnet-proportions", "version": 1, "layers": {"conv2.weight": entry}})
    with pytest.raises(ValueError) as exc:
        load_proportions(f)
    msg = str(exc.value)
    assert "conv2.weight" in msg and "p0, p_neg, p_pos" in msg


def test_load_layer_entry_not_object(tmp_path):
    f = _write(tmp_path / "p.json", {"format": "polarnet-proportions", "version": 1, "layers": {"w": [0, 0.5, 0.5]}})
    with pytest.raises(ValueError, match="'w'"):
        load_proportions(f)


def test_load_invalid_values_names_layer_and_file(tmp_path):
    f = _write(
        tmp_path / "p.json",
        {"format": "polarnet-proportions", "version": 1, "layers": {"conv4.weight": {"p0": 0.5, "p_neg": 0.5, "p_pos": 0.5}}},
    )
    with pytest.raises(ValueError) as exc:
        load_proportions(f)
    msg = str(exc.value)
    assert "conv4.weight" in msg and "sum to 1" in msg and str(f) in msg


@pytest.mark.parametrize(
    "doc",
    [
        {"version": 1, "layers": {}},  # no format
        {"format": "something-else", "version": 1, "layers": {}},
        {"format": "polarnet-proportions", "version": 1},  # no layers
        {"format": "polarnet-proportions", "version": 1, "layers": []},
        [1, 2, 3],
        "polarnet-proportions",
    ],
)
def test_load_not_a_proportions_file(tmp_path, doc):
    f = _write(tmp_path / "p.json", doc)
    with pytest.raises(ValueError, match="not a polarnet proportions file"):
        load_proportions(f)


def test_load_not_json(tmp_path):
    f = tmp_path / "p.json"
    f.write_text("{ this is not json")
    with pytest.raises(ValueError) as exc:
        load_proportions(f)
    assert "not a JSON" in str(exc.value) and str(f) in str(exc.value)


def test_load_ignores_numel_and_accepts_missing_version_as_old(tmp_path):
    f = _write(
        tmp_path / "p.json",
        {"format": "polarnet-proportions", "layers": {"w": {"p0": 0.25, "p_neg": 0.25, "p_pos": 0.5, "numel": 4}}},
    )
    assert load_proportions(f) == {"w": (0.25, 0.25, 0.5)}


def test_counts_from_loaded_proportions_match_file(tmp_path):
    # a SPIN distribution from the paper's Table 1 survives the round trip and yields exact counts
    table = {"conv2": (0.5, 0.27, 0.23), "conv5": (0.5, 0.30, 0.20)}
    f = save_proportions(table, tmp_path / "zf.json")
    loaded = load_proportions(f)
    assert counts_from_proportions(loaded["conv2"], 100) == (50, 27, 23)
    assert counts_from_proportions(loaded["conv5"], 1000) == (500, 300, 200)


# --------------------------------------------------------------------------- only real numbers


@pytest.mark.parametrize("bad", ["100", "0.5", b"100", ("0", 0.5, 0.5), (True, False, False), (1, False, 0),
                                 {"p0": 0, "p_neg": 0.5, "p_pos": 0.5}, (0, 0.5 + 0j, 0.5)])
def test_check_refuses_strings_bools_and_non_reals(bad):
    with pytest.raises(ValueError, match="L: expected three numbers"):
        check_proportions(bad, "L")


def test_check_accepts_numpy_and_torch_numbers():
    import numpy as np
    import torch

    assert check_proportions(np.array([0.0, 0.5, 0.5])) == (0.0, 0.5, 0.5)
    assert check_proportions(torch.tensor([0.25, 0.25, 0.5])) == (0.25, 0.25, 0.5)
    assert check_proportions((np.int64(1), np.float32(0), 0)) == (1.0, 0.0, 0.0)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(st.text(max_size=4), st.booleans(), st.none()), min_size=1, max_size=3),
       position=st.integers(0, 2))
def test_any_non_number_in_a_triple_is_refused(values, position):
    triple = [0.0, 0.5, 0.5]
    triple[position] = values[0]
    with pytest.raises(ValueError, match="three numbers"):
        check_proportions(triple)


def _doc(**layer):
    return {"format": "polarnet-proportions", "version": 1, "layers": {"fc.weight": {"p0": 0.0, "p_neg": 0.5, "p_pos": 0.5, **layer}}}


@pytest.mark.parametrize("entry", [dict(p0="0"), dict(p_neg="0.5"), dict(p0=True, p_neg=0, p_pos=0), dict(p_pos=None)])
def test_load_refuses_strings_and_bools_naming_layer(tmp_path, entry):
    f = _write(tmp_path / "p.json", _doc(**entry))
    with pytest.raises(ValueError) as exc:
        load_proportions(f)
    assert str(f) in str(exc.value) and "'fc.weight'" in str(exc.value) and "three numbers" in str(exc.value)


def test_load_refuses_proportions_summing_to_one_and_a_half(tmp_path):
    f = _write(tmp_path / "p.json", _doc(p0=0.5))
    with pytest.raises(ValueError, match="'fc.weight': proportions must sum to 1.*summing to 1.5"):
        load_proportions(f)


@pytest.mark.parametrize("version", [True, False, -3, 0, 1.0, "1", None, [1]])
def test_load_refuses_invalid_versions(tmp_path, version):
    f = _write(tmp_path / "p.json", {**_doc(), "version": version})
    with pytest.raises(ValueError) as exc:
        load_proportions(f)
    msg = str(exc.value).replace(str(f), "<file>")
    assert "invalid proportions format version" in msg and "newer" not in msg


@pytest.mark.parametrize("numel", [-1, True, 2.5, "4"])
def test_load_refuses_invalid_numel(tmp_path, numel):
    with pytest.raises(ValueError, match="'fc.weight': numel must be a non-negative integer"):
        load_proportions(_write(tmp_path / "p.json", _doc(numel=numel)))


def test_load_refuses_a_layer_given_twice(tmp_path):
    f = tmp_path / "p.json"
    entry = '{"p0": 0, "p_neg": 0.5, "p_pos": 0.5}'
    f.write_text('{"format": "polarnet-proportions", "layers": {"w": ' + entry + ', "w": ' + entry + "}}")
    with pytest.raises(ValueError, match="'w' appears twice"):
        load_proportions(f)


# --------------------------------------------------------------------------- only regular files, atomic writes


def test_load_a_directory(tmp_path):
    with pytest.raises(ValueError, match="is a directory, not a proportions file"):
        load_proportions(tmp_path)


def test_load_a_binary_file(tmp_path):
    f = tmp_path / "p.json"
    f.write_bytes(b"\xff\xfe\x00\x80 binary")
    with pytest.raises(ValueError) as exc:
        load_proportions(f)
    assert str(f) in str(exc.value) and "not UTF-8" in str(exc.value)


def test_load_a_fifo_and_a_device_do_not_hang(tmp_path):
    import os

    fifo = tmp_path / "p.json"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is a FIFO"):
        load_proportions(fifo)
    with pytest.raises(ValueError, match="is a device"):
        load_proportions("/dev/zero")


def test_load_deeply_nested_json(tmp_path):
    f = tmp_path / "p.json"
    f.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="not a JSON proportions file"):
        load_proportions(f)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such proportions file"):
        load_proportions(tmp_path / "none.json")


def test_save_to_a_directory_is_a_clear_error_and_leaves_nothing(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(ValueError, match="is a directory; give a file name"):
        save_proportions({"w": (0, 0.5, 0.5)}, target)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and list(target.iterdir()) == []


def test_save_is_atomic_and_cleans_up_on_failure(tmp_path, monkeypatch):
    import os

    f = save_proportions({"w": (0, 0.5, 0.5)}, tmp_path / "p.json")
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError):
        save_proportions({"w": (1, 0, 0)}, f)
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]
    assert load_proportions(f) == {"w": (0.0, 0.5, 0.5)}  # the old file is intact
