"""Tests for polarnet.registry.Registry."""

from __future__ import annotations

import pytest

from polarnet.registry import Registry


def test_register_returns_object_unchanged_and_get_finds_it():
    reg: Registry[object] = Registry("widget")

    def f():
        return 41

    returned = reg.register("f")(f)
    assert returned is f
    assert reg.get("f") is f
    assert reg.get("f")() == 41


def test_decorator_syntax():
    reg: Registry[object] = Registry("widget")

    @reg.register("one")
    def one():
        return 1

    assert reg.get("one") is one
    assert one() == 1


def test_names_sorted_iter_sorted_and_contains():
    reg: Registry[int] = Registry("number")
    for name, value in [("zeta", 3), ("alpha", 1), ("mid", 2)]:
        reg.register(name)(value)
    assert reg.names() == ["alpha", "mid", "zeta"]
    assert list(reg) == ["alpha", "mid", "zeta"]
    assert "mid" in reg
    assert "nope" not in reg
    assert 3 not in reg  # values are not names
    assert reg.get("zeta") == 3


def test_duplicate_name_raises_and_keeps_first():
    reg: Registry[int] = Registry("reset rule")
    reg.register("flip")(1)
    with pytest.raises(ValueError) as exc:
        reg.register("flip")(2)
    msg = str(exc.value)
    assert "'flip'" in msg
    assert "reset rule" in msg
    assert "already registered" in msg
    assert reg.get("flip") == 1


def test_unknown_name_lists_known_names():
    reg: Registry[int] = Registry("initialiser")
    reg.register("b")(2)
    reg.register("a")(1)
    with pytest.raises(ValueError) as exc:
        reg.get("c")
    msg = str(exc.value)
    assert "unknown initialiser 'c'" in msg
    assert "a, b" in msg  # sorted list of known names


def test_unknown_name_on_empty_registry_says_none():
    reg: Registry[int] = Registry("thing")
    with pytest.raises(ValueError, match=r"\(none\)"):
        reg.get("x")
    assert reg.names() == []
    assert list(reg) == []


def test_unregister_removes_and_name_can_be_reused():
    reg: Registry[int] = Registry("thing")
    reg.register("x")(1)
    reg.unregister("x")
    assert "x" not in reg
    assert reg.names() == []
    with pytest.raises(ValueError):
        reg.get("x")
    reg.register("x")(2)
    assert reg.get("x") == 2


def test_registries_are_independent():
    r1: Registry[int] = Registry("a")
    r2: Registry[int] = Registry("b")
    r1.register("same")(1)
    r2.register("same")(2)
    assert r1.get("same") == 1
    assert r2.get("same") == 2
    assert r1.kind == "a"
