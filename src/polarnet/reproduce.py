"""``polarnet reproduce``: plan, run and score every study the papers' claims need.

Four steps, at the top of the data flow (like :mod:`polarnet.cli`: it orchestrates the
experiments and the analysis and adds no science of its own):

1. **Plan.** For each study the claims need (:func:`polarnet.analysis.scorecard.required_studies`),
   the budget's settings come from :data:`BUDGET_SETTINGS` (data, not branches); the study is
   loaded, its cost estimated on this machine, and its prerequisites checked
   (:data:`PREREQUISITES`: the data, the source weights, the hardware). A study that can't run
   here gets a reason that is true on this machine ("needs CIFAR-10: put … in …").
2. **Print the plan**: one line per study, run or skip, with its settings, runs, estimated
   cost and reason.
3. **Run** the planned studies into ``DIR/studies/<key>/`` with the sweep machinery
   (:func:`polarnet.experiments.run_study`: finished runs are reused, partial studies resumed,
   a folder holding another study refused), pretraining the sources the offline studies need
   into ``DIR/sources/``, and write each study's report.
4. **Score**: one scorecard, ``DIR/scorecard.html`` and ``.md``
   (:func:`polarnet.analysis.scorecard.build_scorecard`), linking to each study's report.

Example:
    >>> plan = plan_reproduction("out/reproduce", "quick", Machine(cores=2, gpu=False), only=("xor5d",))
    >>> [(p.key, p.will_run, p.settings.reduced) for p in plan]
    [('xor5d', True, True)]
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .experiments.cost import describe
from .experiments.plan import duration  # re-exported: plans print their costs with it

__all__ = ["BUDGETS", "BUDGET_SETTINGS", "CPU_LIMITS", "Limit", "PRETRAINED", "PREREQUISITES",
           "Settings", "Pretrained", "Machine", "PlannedStudy", "Reproduction", "plan_reproduction", "format_plan",
           "reproduce", "missing_dataset", "missing_weights", "duration", "required_keys", "settings_for",
           "folder_conflict"]

#: the budgets, smallest first
BUDGETS = ("quick", "cpu", "gpu")

@dataclass(frozen=True)
class Limit:
    """How much estimated time a budget gives studies on this machine's CPU: one study, and all
    of them together (in plan order). Beyond either, a study needs a GPU (or what ``instead``
    says)."""

    study: float
    total: float = float("inf")
    instead: str = ""


#: each budget's limits on a CPU. quick: all of it within 5 minutes on 2 cores (what is left
#: after the studies' training goes to their reports and the scorecard); cpu: overnight
CPU_LIMITS = {"quick": Limit(study=120.0, total=210.0, instead=" (or --budget cpu)"),
              "cpu": Limit(study=4 * 3600.0), "gpu": Limit(study=4 * 3600.0)}

@dataclass(frozen=True)
class Settings:
    """What one budget runs of one study: the preset, its ``[quick]`` table or not, then
    ``--set`` overrides; ``pretrain`` changes the pretraining of a source polarnet makes itself
    (:class:`Pretrained`), e.g. ``(("n_train", 2000),)``.

    Example:
        >>> Settings().summary(), Settings(quick=True, overrides=("val_size=300",)).summary()
        ('paper settings', '--quick, val_size=300')
    """

    quick: bool = False
    overrides: tuple[str, ...] = ()
    pretrain: tuple[tuple[str, Any], ...] = ()

    @property
    def reduced(self) -> bool:
        """Smaller than the paper's settings (the scorecard flags such a study as quick)."""
        return self.quick or bool(self.overrides) or bool(self.pretrain)

    def summary(self) -> str:
        """The settings in a few words, for the plan."""
        parts = (["--quick"] if self.quick else []) + list(self.overrides)
        parts += [f"source {k}={v}" for k, v in self.pretrain]
        return ", ".join(parts) or "paper settings"


PAPER = Settings()
QUICK = Settings(quick=True)
# AlexNet/ZFNet: quick keeps 5 trials (fewer can't give a claim an interval: claims.MIN_RUNS), so on
# a CPU they need more than quick's minutes; cpu takes 64 px inputs (the reference code's 227 needs
# ~13x the compute), the smallest sizes (where most claims are), fewer epochs and validation images
_IMAGE_QUICK = ("trials=5", "val_size=200")
_WANG_CPU = ("input_size=64", "sizes=[100, 200, 500, 1000]", "trials=5", "epochs=20", "batch_size=250",
             "val_size=500")
_SPIN_CPU = ("input_size=64", "sizes=[2000]", "trials=5", "epochs=10", "batch_size=250", "val_size=1000")

#: study key → budget → settings. A key or budget missing here runs the preset's own settings
#: (``--quick`` in the quick budget).
BUDGET_SETTINGS: dict[str, dict[str, Settings]] = {
    # XOR: the presets' [quick] tables take seconds; the paper's grids minutes on 2 cores. Fig. 1's
    # quick grid gains the sizes the paper names (72: Sufficient's epochs; 80, 92: RAND's)
    "xor5d": {"quick": Settings(quick=True, overrides=("sizes=[8, 20, 60, 72, 80, 92, 500]",)), "cpu": PAPER,
              "gpu": PAPER},
    "xor5d-width": {"quick": QUICK, "cpu": PAPER, "gpu": PAPER},
    "xor5d-reset": {"quick": QUICK, "cpu": PAPER, "gpu": PAPER},
    # offline polarity transfer: a source pretrained here on classes 0-4 (smaller in quick)
    "fmnist-split-transfer": {"quick": Settings(quick=True, pretrain=(("n_train", 2000), ("epochs", 2))),
                              "cpu": PAPER, "gpu": PAPER},
    # Wang Fig. 2-3: one size in quick (100, where the paper quotes its numbers), 2 epochs
    "fmnist-alexnet": {"quick": Settings(quick=True, overrides=("sizes=[100]", "epochs=2", *_IMAGE_QUICK)),
                       "cpu": Settings(overrides=_WANG_CPU), "gpu": PAPER},
    "cifar10-alexnet": {"quick": Settings(quick=True, overrides=("sizes=[100]", "epochs=2", *_IMAGE_QUICK)),
                        "cpu": Settings(overrides=_WANG_CPU), "gpu": PAPER},
    # Igoe Fig. 1-2 and Table 1: one size of 200 images, 2 epochs in quick; Table 1 with 3 runs of each
    # of its 8 conditions (its convergence claims need 3)
    **{key: {"quick": Settings(quick=True, overrides=("sizes=[200]", *_IMAGE_QUICK)),
             "cpu": Settings(overrides=_SPIN_CPU), "gpu": PAPER}
       for key in ("spin-alexnet-fmnist", "spin-alexnet-cifar10", "spin-zfnet-fmnist", "spin-zfnet-cifar10")},
    "spin-table1": {"quick": Settings(quick=True, overrides=("sizes=[200]", "trials=3", "val_size=200")),
                    "cpu": Settings(overrides=(*_SPIN_CPU[:2], "trials=3", *_SPIN_CPU[3:])), "gpu": PAPER},
}

@dataclass(frozen=True)
class Pretrained:
    """A source that reproduce trains itself (``polarnet pretrain``) when a preset names it."""

    dataset: str
    classes: tuple[int, ...] = ()
    arch: str = "lenet"
    n_train: int = 6000
    epochs: int = 5

    def file_name(self, stem: str) -> str:
        """``stem.pt`` with the default pretraining, else the changes in the name.

        Example:
            >>> Pretrained("fashion_mnist").file_name("f"), Pretrained("fashion_mnist", epochs=2).file_name("f")
            ('f.pt', 'f-epochs2.pt')
        """
        default = Pretrained(self.dataset, self.classes, self.arch)
        changed = [f"{k}{getattr(self, k)}" for k in ("n_train", "epochs") if getattr(self, k) != getattr(default, k)]
        return "-".join([stem, *changed]) + ".pt"


#: source file named by a preset → how reproduce makes it (into ``DIR/sources/``)
PRETRAINED: dict[str, Pretrained] = {
    "fmnist-classes-0-4.pt": Pretrained("fashion_mnist", classes=(0, 1, 2, 3, 4)),
}

_DATASET_LABELS = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10"}


@dataclass(frozen=True)
class Machine:
    """What this machine offers: CPU cores the studies may use, a GPU, where data is looked for;
    ``idle_gpu``: a GPU that ``--device cpu`` leaves out."""

    cores: int
    gpu: bool
    data_root: Path | None = None
    idle_gpu: bool = False

    @classmethod
    def detect(cls, data_root: str | os.PathLike[str] | None = None, workers: int | None = None,
               device: str = "auto", executor: str = "local") -> Machine:
        """This machine: ``workers`` cores (default: all this process may use; with Ray, the
        ``workers`` CPUs asked for) and a GPU when torch sees one and ``device`` allows it."""
        import torch

        from .experiments.executors import default_workers

        cores = workers if executor == "ray" and workers else min(workers or default_workers(), default_workers())
        found = torch.cuda.is_available()
        return cls(cores, found and device != "cpu", Path(data_root) if data_root else None,
                   idle_gpu=found and device == "cpu")

    @property
    def cpu(self) -> str:
        """``2 CPU cores`` (``1 CPU core``)."""
        return f"{self.cores} CPU core{'s' if self.cores != 1 else ''}"

    def describe(self) -> str:
        """``2 CPU cores, no GPU``."""
        gpu = "a GPU" if self.gpu else "a GPU left out by --device cpu" if self.idle_gpu else "no GPU"
        return f"{self.cpu}, {gpu}"

    def cost(self, study: Any) -> dict[str, Any]:
        """The study's estimate on this machine's CPU cores
        (:func:`polarnet.experiments.cost.estimate_cost`, as ``polarnet presets`` prints it)."""
        from .experiments import estimate_cost

        return estimate_cost(study, workers=self.cores)


# --------------------------------------------------------------------------- what is on this machine

def missing_dataset(name: str, data_root: str | os.PathLike[str] | None = None) -> str | None:
    """Why image dataset ``name`` can't be read here, or ``None`` when it can (or isn't an image
    dataset). Looks where :func:`polarnet.data.images.find_root` looks, changing nothing.

    Example:
        >>> missing_dataset("xor") is None
        True
    """
    from .data.images import IMAGE_DATASETS, search_roots

    spec = IMAGE_DATASETS.get(name)
    if spec is None:
        return None
    roots = search_roots(data_root)
    if any(all((spec.folder(root) / f).is_file() for f in spec.files()) for root in roots):
        return None
    if spec.debian_dir and all((Path(spec.debian_dir) / (f + ".gz")).is_file() for f in spec.files()):
        return None
    label = _DATASET_LABELS.get(name, name)
    package = f"apt-get install {spec.debian_package}, or " if spec.debian_package else ""
    where = spec.folder(roots[0])
    return (f"needs {label}: {package}put torchvision's files ({', '.join(spec.files()[:2])}, …) in {where}, "
            f"or give --data-root")


def missing_weights(source: str) -> str | None:
    """Why the named source weights can't be loaded offline here, or ``None``. Checks
    torchvision weights names (``AlexNet_Weights.IMAGENET1K_V1``) against the torch hub cache,
    where torchvision reads them; files must exist; ``timm:``/``hf:`` names are left to the
    sweep's preflight.

    Example:
        >>> missing_weights("hf:org/name") is None
        True
    """
    from .sources import is_weights_name

    if source.startswith(("timm:", "hf:")):
        return None
    if not is_weights_name(source):
        return None if Path(source).is_file() else f"needs its source weights: {source} (no such file)"
    import torch
    from torchvision.models import get_weight

    try:
        weights = get_weight(source)
    except (ValueError, KeyError, AttributeError):
        return f"needs {source}: not a torchvision weights name"
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    file = os.path.basename(weights.url)
    if (folder / file).is_file():
        return None
    model, _, tag = source.partition("_Weights.")
    what = f"ImageNet {model} weights" if "IMAGENET" in tag.upper() else f"{source} weights"
    return f"needs {what}: put {file} in {folder} (TORCH_HOME moves it; {source})"


# --------------------------------------------------------------------------- the plan

@dataclass
class PlannedStudy:
    """One study of the plan: what runs, where, at what estimated cost, or why it doesn't."""

    key: str
    budget: str
    settings: Settings
    folder: Path
    study: Any = None  # the loaded Study (not validated: its source may not exist yet)
    runs: int = 0
    seconds: float = 0.0  # estimated, on this machine's CPU cores
    rough: bool = True  # the estimate's rates are not measured on this machine (cost.calibrate)
    reason: str | None = None  # why it does not run here; None: it runs
    pretrain: tuple[Pretrained, Path] | None = None  # a source to train first, and its file
    overrides: tuple[str, ...] = ()  # what was given to load_study, data_root and source included
    broken: bool = False  # its settings don't load: a fault of polarnet's, not of this machine

    @property
    def will_run(self) -> bool:
        return self.reason is None

    def line(self, machine: Machine) -> str:
        """The plan's line for this study: run or skip, its key, runs, estimated time on this
        machine's CPU, settings; a skip's reason on a second line."""
        if self.study is None:
            cost = f"{'':>19}"
        else:
            cost = f"{self.runs:>7,} runs  {describe({'seconds': self.seconds, 'rough': self.rough}):<17}"
        note = " (the GPU: faster)" if self.study is not None and machine.gpu and self.study.dataset != "xor" else ""
        if self.pretrain is not None and not self.pretrain[1].is_file():
            note += " + pretraining its source"
        head = f"  {'run ' if self.will_run else 'skip'}  {self.key:<22}{cost} {self.settings.summary()}{note}"
        return head if self.will_run else f"{head}\n{'':8}{self.reason}"


#: the prerequisites of a study, checked in order; each returns why the study can't run here, or None
Prerequisite = Callable[[PlannedStudy, Machine], "str | None"]


def _needs_data(entry: PlannedStudy, machine: Machine) -> str | None:
    datasets = [entry.study.dataset] + ([entry.pretrain[0].dataset] if entry.pretrain else [])
    reasons = [missing_dataset(d, machine.data_root) for d in dict.fromkeys(datasets)]
    return "; ".join(r for r in reasons if r) or None


def _needs_source(entry: PlannedStudy, machine: Machine) -> str | None:
    from .experiments.conditions import needs_source

    study = entry.study
    if entry.pretrain is not None or not study.source:
        return None
    if not any(needs_source(study.condition(c)) for c in study.conditions):
        return None
    return missing_weights(study.source)


def _needs_hardware(entry: PlannedStudy, machine: Machine) -> str | None:
    limit = CPU_LIMITS[entry.budget]
    if machine.gpu or entry.seconds <= limit.study:
        return None
    return (f"needs a GPU{limit.instead}: ~{duration(entry.seconds)} on {machine.cpu} "
            f"(the {entry.budget} budget allows ~{duration(limit.study)} a study on a CPU)"
            f"{'; this machine has one: leave out --device cpu' if machine.idle_gpu else ''}")


def _over_total(planned: Sequence[PlannedStudy], machine: Machine, budget: str) -> None:
    """Give the studies that no longer fit the budget's total on a CPU their reason (in plan order)."""
    limit, spent = CPU_LIMITS[budget], 0.0
    idle = "; this machine has one: leave out --device cpu" if machine.idle_gpu else ""
    if machine.gpu:
        return
    for entry in planned:
        if entry.will_run and spent + entry.seconds > limit.total:
            entry.reason = (f"needs a GPU{limit.instead}: ~{duration(entry.seconds)} on {machine.cpu} would take "
                            f"the {budget} budget past its ~{duration(limit.total)} (the studies above take "
                            f"~{duration(spent)}){idle}")
        elif entry.will_run:
            spent += entry.seconds


PREREQUISITES: tuple[Prerequisite, ...] = (_needs_data, _needs_source, _needs_hardware)


def required_keys() -> dict[str, tuple[str, ...]]:
    """Study key → the conditions the papers' claims need (the scorecard's registry), in its order."""
    from .analysis.scorecard import required_studies

    return dict(required_studies())


def settings_for(key: str, budget: str) -> Settings:
    """The settings ``budget`` runs of study ``key`` (:data:`BUDGET_SETTINGS`, else the preset's own).

    Example:
        >>> settings_for("fmnist-alexnet", "gpu").reduced, settings_for("xor5d", "quick").quick
        (False, True)
    """
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}: choose one of {', '.join(BUDGETS)}")
    return BUDGET_SETTINGS.get(key, {}).get(budget, QUICK if budget == "quick" else PAPER)


def plan_reproduction(out: str | os.PathLike[str], budget: str, machine: Machine, *, only: Sequence[str] = (),
                      keys: Iterable[str] | None = None, calibrate: bool = False) -> list[PlannedStudy]:
    """Every study the claims need (or ``only`` these), with its settings in ``budget``, its
    folder under ``out/studies/``, its estimated cost here, and why it can't run, if so.
    With ``calibrate``, each study's engine path is first timed on this machine
    (:func:`polarnet.experiments.cost.calibrate`, a few seconds once per machine and path);
    a study that can't be timed (its data or source missing) keeps a rough estimate.

    Raises:
        ValueError: an unknown budget, or a key in ``only`` that no claim needs.
    """
    from .data.images import IMAGE_DATASETS
    from .experiments import load_study
    from .experiments.cost import calibrate as calibrate_cost

    out = Path(out)
    keys = list(keys) if keys is not None else list(required_keys())
    unknown = [k for k in only if k not in keys]
    if unknown:
        raise ValueError(f"--only {unknown[0]}: not a study the claims need; choose from {', '.join(keys)}")
    planned = []
    for key in keys:
        if only and key not in only:
            continue
        settings = settings_for(key, budget)
        entry = PlannedStudy(key, budget, settings, out / "studies" / key)
        overrides = list(settings.overrides)
        try:
            study = load_study(key, overrides, quick=settings.quick, validate=False)
            if study.dataset in IMAGE_DATASETS and machine.data_root is not None:
                overrides.append(f"data_root={json.dumps(str(machine.data_root))}")
            recipe = PRETRAINED.get(Path(study.source).name) if study.source else None
            if recipe is not None and not Path(study.source).is_file():
                recipe = replace(recipe, **dict(settings.pretrain))
                file = out / "sources" / recipe.file_name(Path(study.source).stem)
                entry.pretrain = (recipe, file)
                overrides.append(f"source={json.dumps(str(file))}")
            if len(overrides) > len(settings.overrides):
                study = load_study(key, overrides, quick=settings.quick, validate=False)
        except ValueError as e:
            entry.reason, entry.broken = f"cannot load its settings: {_one_line(e)}", True
            planned.append(entry)
            continue
        entry.study, entry.overrides = study, tuple(overrides)
        if calibrate:
            try:
                calibrate_cost(study)
            except Exception:  # noqa: BLE001 (its data or source missing: the prerequisites say so below)
                pass
        cost = machine.cost(study)
        entry.runs, entry.seconds, entry.rough = cost["runs"], cost["seconds"], cost["rough"]
        reasons = [r for check in PREREQUISITES if (r := check(entry, machine))]
        entry.reason = "; ".join(reasons) or None
        planned.append(entry)
    _over_total(planned, machine, budget)
    return planned


def folder_conflict(entry: PlannedStudy) -> str | None:
    """Why ``entry``'s folder can't take its study (it holds runs of other settings, as
    ``polarnet run`` refuses), or ``None``. Read-only; ``None`` when the run keys can't be
    known yet (a source still to be pretrained): the sweep checks again."""
    from .experiments import Store
    from .experiments.plan import plan
    from .experiments.store import setting_differences

    if not (entry.folder / "results.sqlite").is_file() or (entry.pretrain and not entry.pretrain[1].is_file()):
        return None
    with Store.existing(entry.folder) as store:
        stored = {k for (k,) in store.db.execute("SELECT key FROM runs")}
        old = store.study().get("settings") or {}
    stray = stored - {r.key for r in plan(entry.study)}
    if not stray:
        return None
    differ = [f"{k}: {a} there, {b} here" for k, a, b in setting_differences(old, entry.study.to_dict())
              if k not in ("data_root", "source")]
    return (f"{entry.folder} holds another study ({len(stray)} runs not in this one"
            f"{': ' + '; '.join(differ[:4]) if differ else ''})")


def format_plan(plan: Sequence[PlannedStudy], machine: Machine, budget: str, out: str | os.PathLike[str]) -> str:
    """The plan as printed: a header, one line per study (a second with the reason of a skip),
    and the total."""
    running = [p for p in plan if p.will_run]
    total = sum(p.seconds for p in running)
    lines = [f"polarnet reproduce: budget {budget} into {out}; this machine: {machine.describe()}; "
             f"times are estimates on its {machine.cpu}"]
    lines += [p.line(machine) for p in plan]
    lines.append(f"{len(running)} of {len(plan)} studies to run, ~{duration(total)} on {machine.cpu}"
                 f"{'; image studies run on the GPU, faster' if machine.gpu else ''}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- running

@dataclass
class Outcome:
    """What became of one planned study."""

    key: str
    folder: Path | None
    reason: str | None = None
    report: Path | None = None
    quick: bool = False
    failed: bool = False  # planned to run, and it (or some of its runs) failed
    trained: int = 0


@dataclass
class Reproduction:
    """What :func:`reproduce` did: the plan, each study's outcome, the scorecard's files."""

    plan: list[PlannedStudy]
    outcomes: list[Outcome] = field(default_factory=list)
    scorecard: tuple[Path, Path] | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every planned study ran, every one of its runs finished."""
        return not any(o.failed for o in self.outcomes)


def _pretrain(entry: PlannedStudy, machine: Machine, device: str, echo: Callable[[str], None]) -> None:
    from .experiments.pretrain import pretrain

    assert entry.pretrain is not None
    recipe, file = entry.pretrain
    if file.is_file():
        return
    echo(f"  pretraining its source: {recipe.arch} on {recipe.dataset} classes "
         f"{','.join(map(str, recipe.classes))}, {recipe.n_train} images, {recipe.epochs} epochs → {file}")
    metrics = pretrain(recipe.dataset, file, arch=recipe.arch, classes=recipe.classes, n_train=recipe.n_train,
                       epochs=recipe.epochs, device=device,
                       data_root=str(machine.data_root) if machine.data_root else None)
    echo(f"  source: validation accuracy {metrics['val_acc']:.3f}")


def _run_one(entry: PlannedStudy, machine: Machine, *, executor: str, workers: int | None, device: str,
             address: str | None, progress: bool, retry_failed: bool, echo: Callable[[str], None]) -> Outcome:
    from .experiments import load_study, run_study

    if entry.pretrain is not None:
        _pretrain(entry, machine, device, echo)
    study = load_study(entry.key, entry.overrides, quick=entry.settings.quick)  # validated now
    summary = run_study(study, entry.folder, executor=executor, workers=workers, device=device, address=address,
                        progress=progress, retry_failed=retry_failed)
    kept = summary.skipped - summary.failed_before
    echo(f"  {summary.trained} runs trained, {kept} already done, {summary.seconds:.0f} s")
    report = entry.folder / "report.html"
    if summary.trained or summary.damaged or not report.is_file():
        report = _write_report(entry.folder)
    failed = summary.failed + summary.failed_before
    reason = (f"{failed} of {summary.total} runs failed (their reasons: polarnet results {entry.folder}); "
              f"fix the cause, then run the same command with --retry-failed") if failed else None
    return Outcome(entry.key, entry.folder, reason, report, entry.settings.reduced, bool(failed), summary.trained)


def _write_report(folder: Path) -> Path:
    """The study's report, built aside and moved into place with ``report.html`` last: a
    ``report.html`` in a study folder is a whole report (an interrupted build leaves none, and the
    next call builds it again)."""
    from .analysis.report import build_report

    partial = folder / ".report-partial"
    shutil.rmtree(partial, ignore_errors=True)
    html, md = build_report(folder, partial)
    figures = partial / "report-figures"
    if figures.is_dir():
        shutil.rmtree(folder / "report-figures", ignore_errors=True)
        os.replace(figures, folder / "report-figures")
    os.replace(md, folder / "report.md")
    os.replace(html, folder / "report.html")
    shutil.rmtree(partial, ignore_errors=True)
    return folder / "report.html"


def reproduce(out: str | os.PathLike[str], budget: str = "quick", *, executor: str = "local",
              workers: int | None = None, device: str = "auto", address: str | None = None,
              data_root: str | os.PathLike[str] | None = None, only: Sequence[str] = (), progress: bool = True,
              retry_failed: bool = False, dry_run: bool = False, echo: Callable[[str], None] = print,
              machine: Machine | None = None) -> Reproduction:
    """Plan every study the papers' claims need, print the plan, run what fits ``budget`` into
    ``out/studies/<key>/``, write each study's report and the scorecard ``out/scorecard.html``/``.md``.

    Args:
        out: the folder for everything (made if missing).
        budget: ``quick`` (minutes), ``cpu`` (the paper's settings where a CPU manages them,
            reduced elsewhere) or ``gpu`` (the paper's settings).
        executor, workers, device, address, progress, retry_failed: as
            :func:`polarnet.experiments.run_study`.
        data_root: where image data is looked for first; default ``out/data``.
        only: run only these study keys (the others are reported as left out).
        dry_run: plan and print only.
        echo: where lines go (default ``print``).
        machine: what this machine offers (default :meth:`Machine.detect`).

    Returns:
        A :class:`Reproduction`; its ``ok`` is false when a planned study failed.

    Raises:
        ValueError: bad input (an unknown budget, ``out`` is a file), or a study folder holding
            another study's runs (nothing is run then).
        Interrupted: SIGINT or SIGTERM; finished runs and studies are kept.
    """
    start = time.perf_counter()
    out = Path(out)
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}: choose one of {', '.join(BUDGETS)}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file; give a folder (made if missing)")
    keys = list(required_keys())
    unknown = [k for k in only if k not in keys]
    if unknown:
        raise ValueError(f"--only {unknown[0]}: not a study the claims need; choose from {', '.join(keys)}")
    if not dry_run:
        out.mkdir(parents=True, exist_ok=True)  # an unwritable --out fails here, before any planning
    machine = machine or Machine.detect(data_root or out / "data", workers, device, executor)
    plan = plan_reproduction(out, budget, machine, only=only, keys=keys, calibrate=True)
    conflicts = [(p, c) for p in plan if p.will_run and (c := folder_conflict(p))]
    echo(format_plan(plan, machine, budget, out))
    if conflicts:
        raise ValueError("; ".join(c for _, c in conflicts) + f". Run into another --out, or with the budget "
                         f"that made {'them' if len(conflicts) > 1 else 'it'}")
    result = Reproduction(plan)
    if dry_run:
        return result
    todo = [p for p in plan if p.will_run]
    for i, entry in enumerate(todo, 1):
        echo(f"[{i}/{len(todo)}] {entry.key}: {entry.settings.summary()} → {entry.folder}")
        try:
            outcome = _run_one(entry, machine, executor=executor, workers=workers, device=device, address=address,
                               progress=progress, retry_failed=retry_failed, echo=echo)
        except Exception as e:  # one study's failure (data, source, a mismatch) must not stop the others
            reason = f"failed: {_one_line(e)}"
            echo(f"  {reason}")
            outcome = Outcome(entry.key, None, reason, None, entry.settings.reduced, failed=True)
        result.outcomes.append(outcome)
    ran = {o.key for o in result.outcomes}
    left_out = [k for k in keys if only and k not in only]
    result.outcomes += [Outcome(p.key, None, p.reason, quick=p.settings.reduced, failed=p.broken)
                        for p in plan if p.key not in ran]
    result.outcomes += [Outcome(k, None, "left out of this reproduction (--only)") for k in left_out]
    result.scorecard = _write_scorecard(out, result.outcomes, budget)
    result.seconds = time.perf_counter() - start
    return result


def _write_scorecard(out: Path, outcomes: Sequence[Outcome], budget: str) -> tuple[Path, Path]:
    from .analysis.scorecard import StudyStatus, build_scorecard

    statuses: Mapping[str, Any] = {o.key: StudyStatus(o.key, o.folder, o.reason, o.report, o.quick) for o in outcomes}
    return build_scorecard(out, statuses, budget=budget)


def _one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())

