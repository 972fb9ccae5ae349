"""Tests for polarnet.experiments.config: presets, --quick, overrides, validation, study files."""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from importlib import resources

import pytest

from polarnet.experiments.conditions import Condition
from polarnet.experiments.config import Study, list_presets, load_study, parse_override
from polarnet.experiments.plan import plan

PRESETS = sorted(["xor5d", "xor5d-reset", "xor5d-width", "fmnist-alexnet", "cifar10-alexnet", "spin-alexnet-cifar10",
                  "spin-alexnet-fmnist", "spin-zfnet-cifar10", "spin-zfnet-fmnist", "spin-table1",
                  "fmnist-split-transfer", "xor5d-learners", "split-transfer-learners"])
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
    if raw.get("learners") or raw.get("lr_sweep"):  # the listed conditions were expanded, one per learner and rate
        assert {name.split(".")[0] for name in study.conditions} == set(raw.pop("conditions"))
        assert {k: list(v) for k, v in study.lr_sweep.items()} == raw.pop("lr_sweep")
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
    s = load_study("xor5d", ["trials=3", "sizes=[8, 20]", "vectorize=false", "name=my_study", "lr=1",
                             "hidden=7", "thresholds=[0.5, 1]", "dtype=float64", "data_per_trial=true"])
    assert s.trials == 3 and isinstance(s.trials, int)
    assert s.sizes == (8, 20)
    assert s.vectorize is False
    assert s.name == "my_study"
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
    assert load_study("xor5d", ["model=polarnet.models:mlp"]).model == "polarnet.models:mlp"


@pytest.mark.parametrize("model, fragment", [
    ("nonexistent.mod:fn", "model 'nonexistent.mod:fn': cannot import 'fn' from 'nonexistent.mod'"),
    ("polarnet.models:no_such_fn", "model 'polarnet.models:no_such_fn': cannot import 'no_such_fn'"),
    ("polarnet.models:__all__", "is a list, not a function"),
    (":fn", "expected 'package.module:function'"),
])
def test_a_module_function_model_must_resolve_to_a_callable(model, fragment):
    with pytest.raises(ValueError) as e:
        load_study("xor5d", [f"model={model!r}"])
    assert fragment in str(e.value)


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


# --------------------------------------------------------------------------- issue 8: every bad input a clear error

FMNIST = ["dataset='fashion_mnist'", "model='lenet'", "in_channels=1", "sizes=[100]", "val_size=1000",
          "conditions=['frozen_rand', 'fluid_rand']"]


def _message(overrides, source="xor5d") -> str:
    with pytest.raises(ValueError) as e:
        load_study(source, overrides)
    return str(e.value)


@pytest.mark.parametrize("dataset, train, test", [("fashion_mnist", 60000, 10000), ("mnist", 60000, 10000),
                                                  ("cifar10", 50000, 10000)])
def test_image_sizes_are_bounded_by_the_splits(dataset, train, test):
    base = [f"dataset='{dataset}'", "model='lenet'", "conditions=['frozen_rand']"]
    load_study("xor5d", base + [f"sizes=[100, {train}]", f"val_size={test}", "trials=1", "epochs=1"])
    message = _message(base + [f"sizes=[100, {train + 1}]", f"val_size={test + 1}"])
    assert f"sizes=[100, {train + 1}]: [{train + 1}] larger than the {train:,} training images of {dataset}" in message
    assert f"val_size={test + 1}: the test split of {dataset} has {test:,} images; val_size can be at most that" in message


def test_val_size_20000_on_a_10000_image_test_split_is_rejected():
    assert "val_size=20000: the test split of fashion_mnist has 10,000 images" in _message(FMNIST + ["val_size=20000"])


def test_split_sizes_count_only_the_chosen_classes():
    classes = ["classes=[5, 6, 7, 8, 9]"]
    study = load_study("xor5d", FMNIST + classes + ["sizes=[30000]", "val_size=5000", "trials=1", "epochs=1"])
    assert study.val_size == 5000
    message = _message(FMNIST + classes + ["sizes=[30001]", "val_size=5001"])
    assert "training images of fashion_mnist in classes [5, 6, 7, 8, 9]" in message
    assert "val_size=5001: the test split of fashion_mnist has 5,000 images in classes [5, 6, 7, 8, 9]" in message
    # MNIST's classes are not balanced: class 5 has 892 test images, class 1 has 1135
    assert "has 2,027 images in classes [1, 5]" in _message(["dataset='mnist'", "model='lenet'", "classes=[1, 5]",
                                                              "sizes=[100]", "val_size=3000", "conditions=['fluid_rand']"])


@pytest.mark.parametrize("classes", ["[3]", "[0]"])
def test_one_class_is_rejected(classes):
    message = _message(FMNIST + [f"classes={classes}"])
    assert f"classes={classes}: name at least 2 classes" in message


@pytest.mark.parametrize("classes", ["[10]", "[-1, 2]", "[2, 2]"])
def test_class_indices_must_be_distinct_and_in_range(classes):
    assert "distinct class indices 0..9" in _message(FMNIST + [f"classes={classes}"])


def test_classes_on_xor_are_rejected():
    assert "classes=[0, 1]: only image datasets have classes" in _message(["classes=[0, 1]"])


# absurd sizes: refused at once, with the override named

@pytest.mark.parametrize("override, fragment", [
    ("sizes=[100000000]", "sizes=[100000000]: XOR training sets are capped at 10^7 samples"),
    ("val_size=1000000000", "val_size=1000000000: the XOR validation set is capped at 10^7 samples"),
    ("epochs=1000000", "epochs=1000000: the limit is 100,000"),
    ("dims=100000", "dims=100000: the limit is 10,000"),
    ("hidden=[64, 1000000]", "hidden=[64, 1000000]: the limit is 100,000"),
    ("trials=100000000000000000000", "trials=100000000000000000000: the study would have 3.3e+21 runs"),
    ("trials=10000000", "the limit is 10^6 runs"),
    ("trials=9223372036854775807", "trials=9223372036854775807: the study would have"),
])
def test_absurd_sizes_are_refused_naming_the_override(override, fragment):
    message = _message([override])
    assert fragment in message
    assert "set allow_large=true for a real huge study" in message


def test_the_run_limit_message_names_the_grid_and_the_time():
    message = _message(["trials=100000000000000000000"])
    assert "(3 condition×reset × 11 sizes × 1 hidden × 100,000,000,000,000,000,000 trials; ~" in message
    assert "days on 2 CPU cores); the limit is 10^6 runs" in message


def test_the_cost_limit():
    message = _message(["epochs=10000"], "cifar10-alexnet")  # the full preset is ~900 days; 100 × that is too long
    # ~100 × the full preset's estimate, whatever the cost model's constants (they are measured)
    assert re.search(r"the study would take ~[89]\.\de\+04 days on \d+ CPU cores? \(1,080 runs, epochs=10,000", message)
    assert "the study would take ~" in message and "the limit is 10^4 days" in message
    assert "set allow_large=true" in message


def test_allow_large_lifts_the_caps():
    huge = ["sizes=[100000000]", "val_size=1000000000", "trials=10000000", "epochs=1000000", "dims=100000"]
    study = load_study("xor5d", huge + ["allow_large=true"])
    assert study.allow_large and study.trials == 10**7


@pytest.mark.parametrize("override, fragment", [
    ("trials=100000000000000000000", "trials can be at most 2^31-1"),
    ("sizes=[3000000000]", "sizes=[3000000000]: at most 2^31-1"),
    ("batch_size=9223372036854775807", "batch_size=9223372036854775807: at most 2^31-1 (2147483647); a batch larger "
                                       "than the training set is the whole set"),
])
def test_hard_limits_hold_even_with_allow_large(override, fragment):
    message = _message([override, "allow_large=true"])
    assert fragment in message
    assert "allow_large" not in message


def test_allow_large_never_lifts_a_datasets_real_size():
    assert "val_size=20000: the test split" in _message(FMNIST + ["val_size=20000", "allow_large=true"])


def test_a_batch_larger_than_the_training_set_is_legal():
    assert load_study("xor5d", ["batch_size=1000000", "trials=1", "sizes=[8]"]).batch_size == 10**6


def test_validate_builds_no_plan_and_reads_no_data(monkeypatch):
    import sys

    import polarnet.experiments.datasets as datasets

    plan_module = sys.modules["polarnet.experiments.plan"]  # the package exports a function of that name

    def forbidden(*args, **kwargs):
        raise AssertionError("validate must not build the plan or load data")

    monkeypatch.setattr(plan_module, "plan", forbidden)
    monkeypatch.setattr(datasets, "load_data", forbidden)
    monkeypatch.setattr(datasets, "load_images", forbidden)
    assert "the limit is 10^6 runs" in _message(["trials=100000000"])
    load_study("cifar10-alexnet")
    load_study("xor5d-width")


# settings that would pass validation and fail every run

@pytest.mark.parametrize("key", ["lr", "eps", "adam_eps"])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_non_finite_rates_are_rejected(key, value):
    assert f"{key}={float(value)}: must be a finite number > 0" in _message([f"{key}={value}"])


@pytest.mark.parametrize("line, fragment", [
    ("lr = inf", "define_condition.x.lr=inf: must be a finite number > 0"),
    ("lr = nan", "define_condition.x.lr=nan"),
    ("swap = nan", "swap=nan: a fraction in [0, 1]"),
    ("swap = inf", "swap=inf: a fraction in [0, 1]"),
])
def test_non_finite_condition_values_are_rejected(tmp_path, line, fragment):
    path = _write(tmp_path, f'conditions = ["x"]\n[define_condition.x]\npolarity = "random"\nfrozen = true\n{line}\n')
    with pytest.raises(ValueError) as e:
        load_study(path)
    assert fragment in str(e.value)


def test_a_template_file_cannot_give_magnitudes(tmp_path):
    (tmp_path / "signs.plt").write_bytes(b"x")
    message = _message([f"source='{tmp_path / 'signs.plt'}'", "conditions=['fluid_in_weight']"])
    assert "copies the source's weights (magnitudes='source')" in message and "template file" in message


# lenient or traceback inputs

def test_quick_must_be_a_table(tmp_path):
    path = _write(tmp_path, "trials = 2\nquick = 5\n")
    with pytest.raises(ValueError, match=r"quick: expected a table \[quick\] of settings"):
        load_study(path)
    with pytest.raises(ValueError, match=r"quick: expected a table"):
        load_study(path, quick=True)


@pytest.mark.parametrize("override, fragment", [
    ("sizes=20,60", "sizes: expected a list of int, got the text '20,60'; lists take TOML syntax: "
                    "--set 'sizes=[20, 60]' (in a study file: sizes = [20, 60])"),
    ("sizes=20 60", "--set 'sizes=[20, 60]'"),
    ("hidden=[4, 8", "--set 'hidden=[4, 8]'"),
    ("thresholds=0.5,0.9", "--set 'thresholds=[0.5, 0.9]'"),
    ("conditions=frozen_rand,fluid_rand", """--set 'conditions=["frozen_rand", "fluid_rand"]'"""),
    ("sizes=many", "sizes: expected a list of int, got the text 'many'"),
    ("sizes=[[8, 20]]", "sizes: expected a list of int, got [8, 20] (a list)"),
    ("sizes={a=1}", "sizes: expected a list of int, got a table"),
    ("trials={a=1}", "trials: expected int, got {'a': 1} (a table)"),
    ("trials=[3]", "trials: expected int, got [3] (a list)"),
    ("trials=3.0", "trials: expected int, got 3.0 (float)"),
    ("lr=[0.1]", "lr: expected float"),
    ("name=[1]", "name: expected str"),
    ("define_condition=5", "define_condition: expected tables"),
    ("define_condition={x=5}", "define_condition: expected tables"),
    ("define_condition={x={colour=1}}", "define_condition.x: unknown key(s) ['colour']"),
    ("define_condition={x={proportions=[[1]]}}", "define_condition.x.proportions: expected three numbers"),
    ("define_condition={x={proportions=['a', 0, 1]}}", "define_condition.x.proportions: expected three numbers"),
    ("define_condition={x={proportions=[true, false, true]}}", "define_condition.x.proportions: expected three numbers"),
    ("define_condition={x={proportions=5}}", "define_condition.x.proportions: expected list of numbers or str or none"),
    ("define_condition={x={lr=[1]}}", "define_condition.x.lr: expected float or none"),
    ("dims=0", "dims=0: must be >= 2"),
    ("dims=-3", "dims=-3: must be >= 2"),
    ("thresholds=[1.5]", "thresholds=[1.5]: accuracies in (0, 1]"),
    ("thresholds=[nan]", "thresholds=[nan]"),
    ("learned_accuracy=nan", "learned_accuracy=nan"),
    ("trials=1979-05-27", "trials: expected int, got datetime.date(1979, 5, 27)"),
])
def test_bad_values_are_one_clear_error(override, fragment):
    assert fragment in _message([override])


@pytest.mark.parametrize("override", ['source="a\\u0000b"', 'name="a\\u0000b"', 'data_root="x\\u0000"',
                                      'define_condition={x={layers="a\\u0000"}}', 'conditions=["a\\u0000"]'])
def test_nul_characters_are_rejected(override):
    assert "contains a NUL character" in _message([override])


def test_a_very_long_path_is_no_such_file():
    assert "no such file" in _message(["conditions=['frozen_in_polarity']", f"source='{'a' * 5000}'"])


def test_a_binary_or_unreadable_study_file_is_a_clear_error(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00\x01trials = 3")
    with pytest.raises(ValueError, match="cannot read it as a TOML text file"):
        load_study(path)
    with pytest.raises(ValueError, match="neither a preset"):
        load_study("a\0b.toml")
    with pytest.raises(ValueError, match="neither a preset"):
        load_study("nope/../xor5d")  # a preset name is a plain name
    with pytest.raises(ValueError, match="neither a preset"):
        load_study(tmp_path)  # a folder


def test_allow_large_is_a_bool_setting():
    assert load_study("xor5d", ["allow_large=true"]).allow_large is True
    assert Study().allow_large is False
    assert "allow_large: expected bool" in _message(["allow_large=1"])


# --------------------------------------------------------------------------- issue 8: settings that would do nothing


def _defined(table: str, extra=()) -> str:
    """The validation message for a study of one defined condition ``x`` (and ``extra`` overrides)."""
    return _message([f"define_condition={{x={{{table}}}}}", "conditions=['x']", *extra])


@pytest.mark.parametrize("table, fragment", [
    # finding 1: frozen without a template; swap without a template or on a fluid net
    ('polarity="none", frozen=true', "define_condition.x: frozen = true needs a template: polarity 'none' gives none; "
                                     "choose polarity = random, rule, source, source_proportions or proportions, or "
                                     "set frozen = false"),
    ('polarity="none", swap=0.5', "define_condition.x: swap = 0.5 swaps a template's signs: polarity 'none' gives none"),
    ('polarity="random", swap=0.5', "define_condition.x: swap = 0.5 moves the template of a frozen net (Fluid SPIN is "
                                    "frozen = true with a swap); set frozen = true, or remove swap"),
    ('polarity="random", frozen=true, swap_mode="literal"', "swap_mode = 'literal' has no effect without a swap"),
    # finding 2: fields the condition never reads
    ('polarity="rule", rule="xor_sufficient", frozen=true, layers="0.weight"',
     "define_condition.x: layers = '0.weight' has no effect: the rule decides which layers it constrains; remove layers"),
    ('polarity="none", layers="conv"', "layers = 'conv' has no effect: polarity 'none' gives no template"),
    ('polarity="random", frozen=true, proportions=[0, 0.5, 0.5]',
     "define_condition.x: proportions = [0, 0.5, 0.5] has no effect: only polarity = 'proportions' reads it (polarity "
     "is 'random'); remove proportions"),
    ('polarity="random", frozen=true, proportions="/etc/passwd"', "proportions = '/etc/passwd' has no effect"),
    ('polarity="random", frozen=true, rule="nope"', "define_condition.x: rule = 'nope' has no effect: only polarity = "
                                                    "'rule' reads it (polarity is 'random'); remove rule"),
    ('polarity="random", frozen=false, reset="flip"', "define_condition.x: reset = 'flip' has no effect: a fluid net "
                                                      "(frozen = false) never resets; remove reset, or set frozen = true"),
])
def test_a_condition_field_without_effect_is_refused_naming_it(table, fragment):
    assert fragment in _defined(table)


def test_every_problem_of_a_condition_is_listed():
    message = _defined('polarity="none", frozen=true, swap=0.5, layers="conv", rule="xor_sufficient"')
    for fragment in ("frozen = true needs a template", "swap = 0.5 swaps", "layers = 'conv'", "rule = 'xor_sufficient'"):
        assert fragment in message


@pytest.mark.parametrize("name", ["frozen_sufficient", "fluid_sufficient", "frozen_rand", "fluid_rand",
                                  "frozen_in_polarity", "fluid_in_polarity", "fluid_in_weight", "frozen_in_weight",
                                  "freeze_spin", "fluid_spin", "fluid_in", "freeze_spin_file"])
def test_every_registered_condition_is_sound(name):
    from polarnet.experiments.conditions import CONDITIONS, condition_problems

    assert condition_problems(CONDITIONS.get(name)) == []


def test_sound_defined_conditions_still_load(tmp_path):
    load_study("xor5d", ['define_condition={x={polarity="random", frozen=true, swap=0.5, swap_mode="literal", '
                         'reset="flip", layers="0.weight"}, y={polarity="random", frozen=false}}',
                         "conditions=['x', 'y']", "sizes=[8]"])


def test_a_study_source_that_no_condition_reads_is_refused(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"")
    message = _message([f"source='{weights}'", "conditions=['frozen_rand', 'fluid_rand']"])
    assert (f"source='{weights}' is set but no condition uses it (conditions: frozen_rand, fluid_rand); remove it "
            f"(--set source='' unsets a preset's), or add a condition that reads it") in message
    load_study("xor5d", [f"source='{weights}'", "conditions=['fluid_in']"])  # one reader is enough
    # a preset's source is unset with --set source='' (or source=, kept as text)
    for unset in ("source=''", "source="):
        study = load_study("fmnist-split-transfer", [unset, "conditions=['frozen_rand', 'fluid_rand']"])
        assert study.source is None


def test_a_study_proportions_file_that_no_condition_reads_is_refused_and_not_keyed(tmp_path):
    from polarnet.proportions import save_proportions

    path = save_proportions({"0.weight": (0.0, 0.5, 0.5)}, tmp_path / "p.json")
    own = save_proportions({"0.weight": (0.2, 0.4, 0.4)}, tmp_path / "own.json")
    # the only proportions condition has its own file: the study's would be hashed into every key, read by none
    table = f'define_condition={{x={{polarity="proportions", frozen=true, proportions="{own}"}}}}'
    message = _message([f"proportions='{path}'", table, "conditions=['x', 'frozen_rand']"])
    assert f"proportions='{path}' is set but no condition uses it (conditions: x, frozen_rand)" in message
    load_study("xor5d", [f"proportions='{path}'", "conditions=['freeze_spin_file']"])


# finding 7: a built-in name keeps its meaning (claims and colours are tied to it)

def test_redefining_a_built_in_condition_is_refused(tmp_path):
    path = _write(tmp_path, 'conditions = ["frozen_sufficient", "fluid_rand"]\n'
                            '[define_condition.frozen_sufficient]\npolarity = "none"\nfrozen = false\nlr = 0.1\n')
    with pytest.raises(ValueError, match=r"define_condition.frozen_sufficient: 'frozen_sufficient' is a built-in "
                                         r"condition; give yours another name"):
        load_study(path)
    # repeating the built-in definition (a description of one's own included) changes nothing: accepted
    same = _write(tmp_path, '[define_condition.frozen_rand]\npolarity = "random"\nfrozen = true\ndescription = "mine"\n',
                  name="same.toml")
    assert load_study(same).condition("frozen_rand").polarity == "random"


# findings 12 and 18: names are folder names and table labels

@pytest.mark.parametrize("name", ["../../escaped", "/tmp/abs", "", ".", "..", ".hidden", "a/b", "my study", "tab\there",
                                  "new\nline", "x" * 101, "pipe|name"])
def test_a_study_name_must_be_one_safe_path_component(name):
    assert f"name={name!r}: the study's name is its folder's name (out/NAME)" in _message([f"name={_toml_string(name)}"])


@pytest.mark.parametrize("name", ["xor5d", "my-study_2", "v1.2", "x" * 100, "-dash"])
def test_safe_study_names_are_accepted(name):
    assert load_study("xor5d", [f"name={name!r}"]).name == name


def test_the_default_name_from_a_file_stem_is_made_safe(tmp_path):
    assert load_study(_write(tmp_path, "trials = 2\n", name="my study (v2).toml")).name == "my-study-v2"
    assert load_study(_write(tmp_path, "trials = 2\n", name="...toml")).name == "study"


@pytest.mark.parametrize("name", ["../../evil name", "ü\nline|pipe", "a b", ".dot", "x" * 65, "tab\t"])
def test_a_condition_name_must_be_a_printable_identifier(tmp_path, name):
    path = _write(tmp_path, "conditions = [" + _toml_string(name) + "]\n[define_condition." + _toml_string(name)
                  + ']\npolarity = "random"\nfrozen = true\n')
    with pytest.raises(ValueError, match="a condition's name labels tables and figures: 1-64 letters, digits"):
        load_study(path)


def _toml_string(text: str) -> str:
    return json.dumps(text)  # a TOML basic string: \n, \t, \uXXXX escapes


def test_spin_table1_condition_names_with_dots_are_accepted():
    assert "exp3_p0_0.1" in load_study("spin-table1").conditions


# finding 4: settings the model does not take

@pytest.mark.parametrize("override, fragment", [
    ("hidden=[4, 512]", "hidden=[4, 512]: dataset='fashion_mnist' (model 'lenet') takes no hidden size, so every "
                        "value would train the same network under another seed; remove the setting"),
    ("hidden=[16]", "hidden=[16]: dataset='fashion_mnist'"),
    ("dims=7", "dims=7: only XOR has dims; dataset='fashion_mnist' (model 'lenet'): remove the setting"),
])
def test_xor_settings_on_an_image_study_are_refused(override, fragment):
    assert fragment in _message(FMNIST + [override])


def test_an_image_study_keeps_its_hidden_64_grid_point():
    """The keys of existing image studies stay: the default hidden (64) still names their grid point."""
    runs = plan(load_study("xor5d", FMNIST + ["trials=1"]))
    assert {r.hidden for r in runs} == {64}


@pytest.mark.parametrize("override, fragment", [
    ("in_channels=1", "in_channels=1: only image datasets have it; dataset='xor' (model 'mlp'): remove the setting"),
    ("input_size=64", "input_size=64: only image datasets have it"),
    ("subset='first'", "subset='first': only image datasets have it"),
    # finding 5: the vectorised ensemble computes in float32 whatever amp says; vectorize is not in the key
    ("amp=true", "amp=true: mixed precision and channels-last memory are for image models"),
    ("channels_last=true", "channels_last=true: mixed precision"),
])
def test_image_settings_on_an_xor_study_are_refused(override, fragment):
    assert fragment in _message([override])


# finding 20: --quick without a [quick] table

@pytest.mark.parametrize("text", ["trials = 2\n", "trials = 2\n[quick]\n"])
def test_quick_without_a_quick_table_is_refused(tmp_path, text):
    path = _write(tmp_path, text, name="s3.toml")
    assert load_study(path).trials == 2
    with pytest.raises(ValueError, match=r"s3.toml has no \[quick\] table; --quick would change nothing"):
        load_study(path, quick=True)


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_has_a_quick_table(name):
    load_study(name, quick=True, validate=False)


# finding 21: sane ranges of lr, adam_eps, eps

@pytest.mark.parametrize("override, fragment", [
    ("lr=1e308", "lr=1e+308: outside the sane range [1e-08, 10] of lr; set allow_extreme=true if you mean it"),
    ("lr=5e-324", "lr=4.94066e-324: outside the sane range [1e-08, 10] of lr"),
    ("lr=11", "lr=11: outside the sane range"),
    ("eps=1e200", "eps=1e+200: outside the sane range [1e-30, 1] of eps"),
    ("eps=2", "eps=2: outside"),
    ("adam_eps=1e300", "adam_eps=1e+300: outside the sane range [1e-30, 0.1] of adam_eps"),
    ("adam_eps=1e-40", "adam_eps=1e-40: outside"),
    ('define_condition={x={polarity="random", frozen=true, lr=1e30}}',
     "define_condition.x.lr=1e+30: outside the sane range [1e-08, 10] of lr"),
])
def test_training_numbers_outside_their_sane_range_are_refused(override, fragment):
    extra = ["conditions=['x']"] if override.startswith("define_condition") else []
    assert fragment in _message([override, *extra])


def test_allow_extreme_lifts_the_ranges_but_not_the_hard_rules():
    study = load_study("xor5d", ["lr=1e30", "eps=1e200", "adam_eps=1", "allow_extreme=true"])
    assert (study.lr, study.eps, study.adam_eps) == (1e30, 1e200, 1.0)
    assert "lr=0.0: must be > 0" in _message(["lr=0", "allow_extreme=true"])
    assert "lr=inf: must be a finite number" in _message(["lr=inf", "allow_extreme=true"])
    assert "outside the sane range" in _message(["lr=1e30", "allow_large=true"])  # size caps are another matter


def test_range_boundaries_are_accepted():
    load_study("xor5d", ["lr=1e-8", "eps=1", "adam_eps=0.1"])
    load_study("xor5d", ["lr=10", "eps=1e-30", "adam_eps=1e-30"])


# --------------------------------------------------------------------------- fuzzing: ValueError or a Study, nothing else

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                     st.sampled_from(["frozen_rand", "posRand", "fashion_mnist", "cifar10", "alexnet", "lenet",
                                      "mlp", "x.mod:fn", "20,60", "a\0b", "conv", "nope", "float64", "first"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                       max_leaves=8)
_CONDITION_TABLES = st.dictionaries(
    st.sampled_from(["polarity", "frozen", "magnitudes", "rule", "layers", "reset", "lr", "proportions", "swap",
                     "swap_mode", "description", "colour"]), _VALUES, max_size=4)
_KEYS = st.sampled_from(sorted(dataclasses.asdict(Study())) + ["quick", "unknown_key"])


def _toml(value) -> str:
    """A value as TOML text (None as a bare word, which TOML rejects: kept as text by --set)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value).replace("inf", "inf").replace("nan", "nan")
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode().replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + "}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(
    st.tuples(_KEYS, _VALUES),
    st.tuples(st.just("define_condition"), st.dictionaries(st.sampled_from(["x", "frozen_rand"]), _CONDITION_TABLES,
                                                           max_size=2)),
), max_size=4), st.booleans(), st.booleans())
def test_fuzzed_overrides_give_a_study_or_a_value_error(pairs, quick, raw_text):
    overrides = [f"{key}={value if raw_text and isinstance(value, str) else _toml(value)}" for key, value in pairs]
    try:
        study = load_study("xor5d", overrides, quick=quick)
    except ValueError as e:
        assert str(e)
    else:
        assert isinstance(study, Study)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_KEYS, _VALUES), max_size=5))
def test_fuzzed_study_files_give_a_study_or_a_value_error(tmp_path, pairs):
    lines = [f"{key} = {_toml(value)}" for key, value in pairs]
    path = tmp_path / "fuzz.toml"
    path.write_text("\n".join(lines) + "\n")
    try:
        study = load_study(path, quick=True)
    except ValueError as e:
        assert str(e)
    else:
        assert isinstance(study, Study)


# --------------------------------------------------------------------------- head (issue 9 §3): replace or extend

ALEXNET_FMNIST = ["dataset='fashion_mnist'", "model='alexnet'", "sizes=[100]", "val_size=1000",
                  "conditions=['frozen_rand']", "trials=1"]


@pytest.mark.parametrize("source, overrides, key", [
    # keys computed before `head` existed: a study that does not set it keeps its runs
    ("xor5d", ["trials=1", "sizes=[8]"], "366c4677f0ab0ce831087463"),
    ("xor5d", ALEXNET_FMNIST, "353b30a8d0df18fa485b1b35"),
    ("spin-zfnet-cifar10", ["trials=1"], "7e19e7ea4955175356345990"),
    # the Wang preset before it made head = "extend" its default: head = "replace" names those runs again
    ("fmnist-alexnet", ["trials=1", "sizes=[100]", "head='replace'"], "cd00a0a8a9a9f7688c22a064"),
])
def test_a_study_without_head_keeps_its_run_keys(source, overrides, key):
    assert plan(load_study(source, overrides))[0].key == key


def test_head_extend_gives_other_runs_and_is_stored_with_the_study():
    replace = plan(load_study("xor5d", ALEXNET_FMNIST))[0]
    extend = plan(load_study("xor5d", ALEXNET_FMNIST + ["head='extend'"]))[0]
    assert extend.key != replace.key
    assert extend.settings()["study"]["head"] == "extend" and "head" not in replace.settings()["study"]
    assert Study().head == "replace" and Study().to_dict()["head"] == "replace"


@pytest.mark.parametrize("name, head", [("fmnist-alexnet", "extend"), ("cifar10-alexnet", "extend"),
                                        ("spin-alexnet-cifar10", "replace"), ("spin-alexnet-fmnist", "replace"),
                                        ("spin-zfnet-cifar10", "replace"), ("spin-zfnet-fmnist", "replace"),
                                        ("spin-table1", "replace")])
def test_the_wang_presets_extend_the_head_and_the_igoe_presets_do_not(name, head):
    """Wang et al.'s reference code keeps ImageNet's fc8 and adds a layer; Igoe et al. say nothing of it."""
    assert load_study(name).head == head
    assert load_study(name, quick=True).head == head


def test_head_reaches_the_model_through_model_kwargs():
    from polarnet.experiments.datasets import model_kwargs
    from polarnet.models import get_model

    study = load_study("xor5d", ALEXNET_FMNIST + ["head='extend'", "in_channels=1"])
    kwargs = model_kwargs(study)
    assert kwargs == {"num_classes": 10, "in_channels": 1, "head": "extend"}
    assert get_model(study.model, **kwargs).classifier[8].out_features == 10
    assert "head" not in model_kwargs(load_study("xor5d", ALEXNET_FMNIST))  # models without the option build as before


@pytest.mark.parametrize("overrides, message", [
    (["head='extend'"], "head='extend': only image models (alexnet, zfnet) have it; dataset='xor' (model 'mlp'): "
                        "remove the setting"),
    (FMNIST + ["head='extend'"], "head='extend': model 'lenet' has no head option (alexnet and zfnet have one); "
                                 "remove the setting, or choose model = 'alexnet' or 'zfnet'"),
    (ALEXNET_FMNIST + ["head='keep'"], "head='keep': choose 'replace' (the last layer is num_classes-way) or 'extend' "
                                       "(keep the 1000-way ImageNet layer, add a num_classes-way layer on top)"),
])
def test_head_is_refused_where_it_has_no_effect_or_no_meaning(overrides, message):
    text = _message(overrides)
    assert text == f"invalid study settings:\n  {message}"  # one line, the only problem


def test_head_is_a_string_setting():
    with pytest.raises(ValueError, match=r"^head: expected str, got True \(bool\)"):
        load_study("xor5d", ALEXNET_FMNIST + ["head=true"])


def test_head_on_a_model_of_your_own_that_takes_it(tmp_path, monkeypatch):
    (tmp_path / "head_models_demo.py").write_text(
        "from torch import nn\n"
        "def with_head(num_classes=10, in_channels=3, head='replace'):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 28 * 28, num_classes))\n"
        "def with_kwargs(**kwargs):\n"
        "    return nn.Linear(2, 2)\n"
        "def without(num_classes=10, in_channels=3):\n"
        "    return nn.Linear(2, 2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    base = FMNIST[:1] + FMNIST[2:] + ["head='extend'"]
    assert load_study("xor5d", base + ["model='head_models_demo:with_head'"]).head == "extend"
    assert load_study("xor5d", base + ["model='head_models_demo:with_kwargs'"]).head == "extend"
    assert "model 'head_models_demo:without' has no head option" in _message(base + ["model='head_models_demo:without'"])


# --------------------------------------------------------------------------- learners × lr sweeps

def test_learners_and_lr_sweep_expand_into_explicit_conditions():
    s = load_study("xor5d", ["learners=['freeze_sgd', 'reparam-exp']", "lr_sweep={reparam-exp=[0.1, 0.3], fluid=[0.01]}"])
    assert s.conditions == ("frozen_sufficient.freeze_sgd", "frozen_sufficient.reparam-exp.lr0.1",
                            "frozen_sufficient.reparam-exp.lr0.3", "frozen_rand.freeze_sgd", "frozen_rand.reparam-exp.lr0.1",
                            "frozen_rand.reparam-exp.lr0.3", "fluid_rand.lr0.01")
    c = s.condition("frozen_rand.reparam-exp.lr0.3")
    assert (c.polarity, c.frozen, c.learner, c.lr) == ("random", True, "reparam-exp", 0.3)
    assert s.condition("frozen_rand.freeze_sgd").lr is None  # no rates: the study's lr
    assert s.condition("fluid_rand.lr0.01").learner == "freeze_sgd" and not s.condition("fluid_rand.lr0.01").frozen


@pytest.mark.parametrize("overrides, message", [
    (["learners=['sgd']"], "learners=['sgd']: choose from"),
    (["learners=['eg', 'eg']"], "contains duplicates"),
    (["learners=['eg']", "lr_sweep={project=[0.1]}"], "lr_sweep.project: not a learner of this study"),
    (["learners=['eg']", "lr_sweep={eg=[]}"], "lr_sweep.eg=[]: distinct rates, at least one"),
    (["learners=['eg']", "lr_sweep={eg=[0.1, 0.1]}"], "distinct rates"),
    (["learners=['eg']", "lr_sweep={eg=[50.0]}"], "outside the sane range"),
    (["lr_sweep={eg='fast'}"], "lr_sweep.eg: expected a list of learning rates"),
])
def test_bad_learner_settings_are_named(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_study("xor5d", overrides)


def test_unexpanded_learners_are_refused():
    with pytest.raises(ValueError, match="were not expanded"):
        Study(conditions=("frozen_rand",), learners=("eg",)).validate()


def test_a_condition_learner_is_checked():
    with pytest.raises(ValueError, match="learner = 'eg' keeps a template: a fluid net"):
        load_study("xor5d", ["conditions=['mine']", "define_condition={mine={polarity='none', learner='eg'}}"])
    with pytest.raises(ValueError, match="learner 'eg' never resets"):
        load_study("xor5d", ["conditions=['mine']",
                             "define_condition={mine={polarity='random', frozen=true, learner='eg', reset='zero'}}"])


def test_a_study_takes_timm_and_hf_weights_names_as_its_source():
    from polarnet.experiments import load_study

    for name in ("timm:resnet18", "hf:prajjwal1/bert-tiny", "AlexNet_Weights.IMAGENET1K_V1"):
        assert load_study("fmnist-alexnet", [f"source={name}"]).source == name
    with pytest.raises(ValueError, match="no such file"):
        load_study("fmnist-alexnet", ["source=nowhere/weights.pt"])
