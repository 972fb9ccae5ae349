"""Tests for polarnet.experiments.config: presets, --quick, overrides, validation, study files."""

from __future__ import annotations

import dataclasses
import tomllib
from importlib import resources

import pytest

from polarnet.experiments.conditions import Condition
from polarnet.experiments.config import Study, list_presets, load_study, parse_override
from polarnet.experiments.plan import plan

PRESETS = sorted(["xor5d", "xor5d-reset", "xor5d-width", "fmnist-alexnet", "cifar10-alexnet", "spin-alexnet-cifar10",
                  "spin-alexnet-fmnist", "spin-zfnet-cifar10", "spin-zfnet-fmnist", "spin-table1",
                  "fmnist-split-transfer"])
SIZES = (8, 20, 32, 40, 52, 60, 72, 80, 92, 100, 500)


def _write(tmp_path, text: str, name: str = "study.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- presets


def test_list_presets_names_and_descriptions():
    presets = list_presets()
    assert sorted(presets) == PRESETS
    for name, description in presets.items():
        assert description, f"preset {name} has no description"
    assert "Fig. 1" in presets["xor5d"]
    assert "Fig. 4" in presets["xor5d-width"]
    assert "Fig. C.1" in presets["xor5d-reset"]


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_validates(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fmnist-classes-0-4.pt").write_bytes(b"")  # fmnist-split-transfer's source, made by pretrain
    study = load_study(name)
    assert isinstance(study, Study)
    assert study.name == name  # the name defaults to the preset's
    assert study.validate() is study
    # every value in the preset file is what the study holds (lists become tuples)
    raw = tomllib.loads((resources.files("polarnet.presets") / f"{name}.toml").read_text())
    raw.pop("quick")
    for key, value in raw.pop("define_condition", {}).items():
        condition = study.define_condition[key]
        for field, expected in value.items():
            got = getattr(condition, field)
            if field == "proportions" and isinstance(expected, str):  # resolved beside the preset
                assert got.endswith(expected), (key, field)
            else:
                assert (list(got) if isinstance(got, tuple) else got) == expected, (key, field)
    for key, value in raw.items():
        got = getattr(study, key)
        assert (list(got) if isinstance(got, tuple) else got) == value, key


def test_xor5d_preset_is_the_paper_setup():
    s = load_study("xor5d")
    assert s.conditions == ("frozen_sufficient", "frozen_rand", "fluid_rand")
    assert s.sizes == SIZES
    assert s.hidden == (64,)
    assert s.resets == ("posRand",)
    assert (s.trials, s.epochs, s.batch_size, s.lr) == (50, 100, 32, 0.03)
    assert (s.dims, s.val_size, s.dataset, s.model) == (5, 1000, "xor", "mlp")


def test_xor5d_width_and_reset_presets():
    width = load_study("xor5d-width")
    assert {3, 10, 15} <= set(width.hidden)
    assert min(width.hidden) == 2 and max(width.hidden) == 64
    assert 500 in width.sizes
    assert width.learned_accuracy == 0.95
    reset = load_study("xor5d-reset")
    assert reset.resets == ("posRand", "posCon", "zero", "flip")


@pytest.mark.parametrize("name, expected", [
    ("xor5d", {"sizes": (8, 20, 32, 60, 100, 500), "trials": 20, "epochs": 60}),
    ("xor5d-width", {"sizes": (500,), "hidden": (2, 3, 5, 10, 15, 32), "trials": 10, "epochs": 30}),
    ("xor5d-reset", {"sizes": (20, 60, 100), "trials": 6, "epochs": 30}),
])
def test_quick_applies_the_quick_table(name, expected):
    full, quick = load_study(name), load_study(name, quick=True)
    for key, value in expected.items():
        assert getattr(quick, key) == value
    # everything else is unchanged, the name included
    changed = {f.name for f in dataclasses.fields(Study) if getattr(full, f.name) != getattr(quick, f.name)}
    assert changed == set(expected)
    assert quick.name == name


def test_quick_table_is_ignored_without_quick():
    assert load_study("xor5d").trials == 50


def test_overrides_apply_after_quick():
    s = load_study("xor5d", ["trials=3"], quick=True)
    assert s.trials == 3 and s.epochs == 60


# --------------------------------------------------------------------------- overrides


@pytest.mark.parametrize("text, expected", [
    ("trials=5", ("trials", 5)),
    ("sizes=[8, 20]", ("sizes", [8, 20])),
    ("vectorize=false", ("vectorize", False)),
    ("lr=0.01", ("lr", 0.01)),
    ('name="quoted"', ("name", "quoted")),
    ("name=my study", ("name", "my study")),  # not TOML: kept as text
    ("dtype=float64", ("dtype", "float64")),
    (" trials = 7 ", ("trials", 7)),
    ("resets=['posRand', 'flip']", ("resets", ["posRand", "flip"])),
])
def test_parse_override(text, expected):
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["trials", "=5", "  =x"])
def test_parse_override_needs_key_and_value(text):
    with pytest.raises(ValueError, match="key=value"):
        parse_override(text)


def test_overrides_are_typed():
    s = load_study("xor5d", ["trials=3", "sizes=[8, 20]", "vectorize=false", "name=my study", "lr=1",
                             "hidden=7", "thresholds=[0.5, 1]", "dtype=float64", "data_per_trial=true"])
    assert s.trials == 3 and isinstance(s.trials, int)
    assert s.sizes == (8, 20)
    assert s.vectorize is False
    assert s.name == "my study"
    assert s.lr == 1.0 and isinstance(s.lr, float)  # an int is a fine float
    assert s.hidden == (7,)  # a scalar for a list setting becomes a one-element tuple
    assert s.thresholds == (0.5, 1.0)
    assert s.dtype == "float64"
    assert s.data_per_trial is True


def test_later_override_wins():
    assert load_study("xor5d", ["trials=3", "trials=4"]).trials == 4


def test_unknown_key_is_rejected_naming_it_and_listing_allowed():
    with pytest.raises(ValueError) as e:
        load_study("xor5d", ["trails=3"])
    message = str(e.value)
    assert "'trails'" in message
    assert "allowed" in message
    for key in ("trials", "sizes", "hidden", "resets", "conditions", "define_condition"):
        assert f"'{key}'" in message


def test_unknown_key_in_a_file_is_rejected(tmp_path):
    path = _write(tmp_path, 'colour = "red"\n')
    with pytest.raises(ValueError, match=r"unknown setting.*'colour'.*allowed"):
        load_study(path)


def test_unknown_key_in_the_quick_table_is_rejected_with_quick(tmp_path):
    path = _write(tmp_path, 'trials = 2\n[quick]\ntrails = 1\n')
    assert load_study(path).trials == 2  # [quick] is not applied
    with pytest.raises(ValueError, match="'trails'"):
        load_study(path, quick=True)


@pytest.mark.parametrize("override, key", [
    ("trials=x", "trials"),
    ("trials=2.5", "trials"),
    ("trials=true", "trials"),
    ('sizes=["a"]', "sizes"),
    ("sizes=[8, 2.0]", "sizes"),
    ("hidden=[true]", "hidden"),
    ("lr=fast", "lr"),
    ("vectorize=1", "vectorize"),
    ("name=3", "name"),
    ("resets=[1]", "resets"),
    ("thresholds=['high']", "thresholds"),
    ("source=1", "source"),
])
def test_wrong_types_are_rejected_naming_the_key(override, key):
    with pytest.raises(ValueError, match=rf"^{key}: expected"):
        load_study("xor5d", [override])


def test_wrong_type_in_a_file_is_rejected(tmp_path):
    path = _write(tmp_path, 'epochs = "many"\n')
    with pytest.raises(ValueError, match="epochs: expected int, got 'many'"):
        load_study(path)


@pytest.mark.parametrize("override, fragment", [
    ("trials=-1", "trials=-1: must be >= 1"),
    ("trials=0", "trials=0: must be >= 1"),
    ("epochs=0", "epochs=0"),
    ("batch_size=0", "batch_size=0"),
    ("val_size=0", "val_size=0"),
    ("lr=0", "lr=0.0: must be > 0"),
    ("eps=-1", "eps=-1.0"),
    ("dims=1", "dims=1: must be >= 2"),
    ("conditions=['nope']", "unknown 'nope'"),
    ("conditions=[]", "conditions: name at least one"),
    ("resets=['bogus']", "resets=['bogus']: choose from"),
    ("resets=[]", "resets=[]"),
    ("dtype=float16", "dtype='float16': choose one of ['float32', 'float64']"),
    ("thresholds=[0]", "thresholds=[0.0]: accuracies in (0, 1]"),
    ("thresholds=[1.5]", "thresholds=[1.5]"),
    ("thresholds=[-0.1]", "thresholds=[-0.1]"),
    ("thresholds=[]", "thresholds=[]"),
    ("learned_accuracy=0", "learned_accuracy=0.0"),
    ("learned_accuracy=1.01", "learned_accuracy=1.01"),
    ("sizes=[8, 8]", "sizes=[8, 8]: contains duplicates"),
    ("sizes=[0]", "sizes=[0]: positive integers"),
    ("sizes=[]", "sizes=[]"),
    ("hidden=[0]", "hidden=[0]: positive integers"),
    ("model=nope", "model='nope': choose one of"),
    ("dataset=imagenet", "dataset='imagenet': choose one of ['cifar10', 'fashion_mnist', 'mnist', 'xor']"),
    ("init_linear=nope", "init_linear='nope': choose one of"),
])
def test_invalid_values_are_rejected(override, fragment):
    with pytest.raises(ValueError) as e:
        load_study("xor5d", [override])
    assert fragment in str(e.value)


def test_boundary_values_are_accepted():
    s = load_study("xor5d", ["trials=1", "thresholds=[1.0]", "learned_accuracy=1", "dims=2", "sizes=[1]"])
    assert s.thresholds == (1.0,) and s.learned_accuracy == 1.0 and s.dims == 2 and s.sizes == (1,)


def test_unknown_condition_error_lists_the_registered_ones():
    with pytest.raises(ValueError) as e:
        load_study("xor5d", ["conditions=['frozen_sufficient', 'nope']"])
    message = str(e.value)
    for name in ("frozen_sufficient", "frozen_rand", "fluid_rand", "fluid_sufficient"):
        assert name in message
    assert "[define_condition.nope]" in message


def test_model_may_be_a_module_function():
    assert load_study("xor5d", ["model=mypkg.mod:factory"]).model == "mypkg.mod:factory"


def test_all_problems_are_listed_in_one_error():
    bad = ["trials=-1", "conditions=['nope']", "resets=['bogus']", "dtype=float16", "thresholds=[1.5]",
           "sizes=[8, 8]", "model=nope", "dataset=imagenet"]
    with pytest.raises(ValueError) as e:
        load_study("xor5d", bad)
    message = str(e.value)
    assert message.startswith("invalid study settings:")
    for fragment in ("trials=-1", "unknown 'nope'", "resets=['bogus']", "dtype='float16'", "thresholds=[1.5]",
                     "sizes=[8, 8]", "model='nope'", "dataset='imagenet'"):
        assert fragment in message
    assert len(message.splitlines()) == 1 + len(bad)  # the header and one line per problem


def test_validate_on_a_constructed_study():
    assert Study().validate() == Study()
    with pytest.raises(ValueError, match="trials=0"):
        Study(trials=0).validate()


@pytest.mark.parametrize("override", ["hidden=[3, 3]", "resets=['posRand', 'posRand']",
                                      "conditions=['fluid_rand', 'fluid_rand']"])
def test_duplicate_grid_entries_are_rejected(override):
    with pytest.raises(ValueError, match="duplicates"):
        load_study("xor5d", [override])


# --------------------------------------------------------------------------- study files


def test_study_file_with_a_defined_condition(tmp_path):
    path = _write(tmp_path, """
description = "my own study"
conditions = ["my_frozen", "fluid_rand"]
sizes = [8, 20]
trials = 2
epochs = 3

[define_condition.my_frozen]
polarity = "random"
frozen = true
reset = "flip"
lr = 0.01
description = "Frozen RAND with flip"
""", name="mine.toml")
    study = load_study(path)
    assert study.name == "mine"  # from the file's stem
    assert study.description == "my own study"
    cond = study.condition("my_frozen")
    assert cond == Condition("my_frozen", polarity="random", frozen=True, reset="flip", lr=0.01,
                             description="Frozen RAND with flip")
    assert study.condition("fluid_rand").polarity == "none"  # from the registry
    runs = plan(study)
    assert len(runs) == 2 * 2 * 2
    assert {r.reset for r in runs if r.condition.name == "my_frozen"} == {"flip"}
    assert {r.lr for r in runs if r.condition.name == "my_frozen"} == {0.01}
    assert {r.lr for r in runs if r.condition.name == "fluid_rand"} == {0.03}
    assert study.to_dict()["define_condition"]["my_frozen"]["reset"] == "flip"


def test_study_file_name_setting_wins_over_stem(tmp_path):
    assert load_study(_write(tmp_path, 'name = "given"\n', name="stem.toml")).name == "given"


def test_defined_but_unlisted_condition_is_not_run(tmp_path):
    # a defined condition that is not listed in conditions is accepted but not run
    path = _write(tmp_path, '[define_condition.spare]\npolarity = "random"\n')
    study = load_study(path)
    assert "spare" in study.define_condition
    assert {r.condition.name for r in plan(study)} == set(study.conditions)


def test_unknown_key_in_a_defined_condition_is_rejected(tmp_path):
    path = _write(tmp_path, 'conditions = ["x"]\n[define_condition.x]\npolarity = "random"\ncolour = "red"\n')
    with pytest.raises(ValueError) as e:
        load_study(path)
    message = str(e.value)
    assert "define_condition.x" in message and "'colour'" in message
    for key in ("polarity", "frozen", "magnitudes", "rule", "layers", "reset", "lr", "description"):
        assert f"'{key}'" in message


@pytest.mark.parametrize("line, fragment", [
    ('polarity = "magic"', "define_condition.x.polarity='magic'"),
    ('magnitudes = "magic"', "define_condition.x.magnitudes='magic'"),
    ('reset = "magic"', "define_condition.x.reset='magic'"),
    ("lr = -1.0", "define_condition.x.lr=-1.0"),
])
def test_invalid_values_in_a_defined_condition_are_rejected(tmp_path, line, fragment):
    path = _write(tmp_path, f'conditions = ["x"]\n[define_condition.x]\n{line}\n')
    with pytest.raises(ValueError) as e:
        load_study(path)
    assert fragment in str(e.value)


@pytest.mark.parametrize("line", ['frozen = "yes"', 'lr = "fast"'])
def test_wrong_types_in_a_defined_condition_are_rejected(tmp_path, line):
    path = _write(tmp_path, f'conditions = ["x"]\n[define_condition.x]\npolarity = "random"\n{line}\n')
    with pytest.raises(ValueError, match="define_condition.x"):
        load_study(path)


def test_source_condition_without_source_is_rejected_before_running(tmp_path):
    path = _write(tmp_path, 'conditions = ["x"]\n[define_condition.x]\npolarity = "source"\nfrozen = true\n')
    with pytest.raises(ValueError, match="source"):
        load_study(path)


def test_define_condition_must_be_tables(tmp_path):
    path = _write(tmp_path, 'define_condition = 3\n')
    with pytest.raises(ValueError, match=r"define_condition: expected tables \[define_condition.NAME\]"):
        load_study(path)


@pytest.mark.parametrize("source", ["no-such-preset", "missing.toml"])
def test_missing_preset_or_file_is_a_clear_error(tmp_path, source):
    with pytest.raises(ValueError) as e:
        load_study(tmp_path / source if source.endswith(".toml") else source)
    message = str(e.value)
    assert "neither a preset" in message and "nor a TOML file" in message
    for name in PRESETS:
        assert name in message


def test_invalid_toml_is_a_clear_error(tmp_path):
    path = _write(tmp_path, "trials = = 3\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_study(path)


def test_define_condition_as_an_inline_table_override():
    study = load_study("xor5d", ['define_condition={mine={polarity="random", frozen=true, reset="zero"}}',
                                 'conditions=["mine"]', "sizes=[8]", "trials=1"])
    assert study.condition("mine") == Condition("mine", polarity="random", frozen=True, reset="zero")
    assert [r.reset for r in plan(study)] == ["zero"]
