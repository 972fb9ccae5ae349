"""The ``polarnet`` command: parses arguments and calls the library, nothing more."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from types import FrameType
from typing import TYPE_CHECKING

from .interrupt import Interrupted

if TYPE_CHECKING:  # the library is imported inside the commands: see main()
    from .layers import LayerSpec
    from .template import PolarityTemplate

__all__ = ["main", "build_parser"]


def _layers(text: str) -> LayerSpec:
    """``all``/a kind (``conv``, ``linear``, ``embedding``…)/a registered kind's name/a glob, or a
    comma-separated list of parameter names."""
    return [n.strip() for n in text.split(",") if n.strip()] if "," in text else text


def _output_file(output: str, *inputs: str, suffix: str) -> Path:
    """Check an ``-o`` file path before any work: a file path, not one of the inputs, and not
    a study's store (or any file inside an input study folder that polarnet keeps there).
    ``suffix`` is what the command writes (``.plt``…), for the example a folder is answered with."""
    if not output.strip():
        raise ValueError("-o: an empty path; give a file path")
    path = Path(output)
    if path.is_dir():
        raise ValueError(f"-o {output}: is a folder; give a file path (e.g. {path / 'out'}{suffix})")
    if path.name.startswith("results.sqlite"):
        raise ValueError(f"-o {output}: is where a study keeps its results; choose another output path")
    for given in inputs:
        if Path(given).exists() and path.exists() and os.path.samefile(given, path):
            raise ValueError(f"-o {output}: is the input file {given}; writing it would destroy the input. "
                             f"Choose another output path")
    if path.exists() and not path.is_file():
        raise ValueError(f"-o {output}: is not a regular file; give a file path")
    return path


def _write_text(path: Path, text: str) -> None:
    """Write a whole file or nothing."""
    from .fileformat import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode(), "Markdown file", ValueError)


def _classes(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated class indices, e.g. ``0,1,2``."""
    try:
        return tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated class indices, e.g. 0,1,2,3,4") from None


def _extract(args: argparse.Namespace) -> int:
    from .sources import load_state_dict
    from .template import PolarityTemplate

    _output_file(args.output, args.source, suffix=".plt")
    state = load_state_dict(args.source)
    template = PolarityTemplate.from_model(state, layers=args.layers, bias=args.bias)
    template.meta.update({"extracted_from": str(args.source)})
    path = template.save(args.output)
    print(f"wrote {path}: {len(template)} layers, {template.numel():,} weights, {path.stat().st_size:,} bytes")
    return 0


def format_info(template: PolarityTemplate, size_on_disk: int) -> str:
    """The per-layer table printed by ``polarnet template info``.

    Example:
        >>> import torch
        >>> from polarnet import PolarityTemplate
        >>> print(format_info(PolarityTemplate({"w": torch.tensor([1, -1, 0, 1])}), 100).splitlines()[1])
        w                                        (4,)                   0.2500  0.2500  0.5000
    """
    lines = [f"{'layer':<40} {'shape':<22} {'p0':>6}  {'p-':>6}  {'p+':>6}"]
    for name, (p0, pn, pp) in template.proportions().items():
        lines.append(f"{name:<40} {str(tuple(template[name].shape)):<22} {p0:.4f}  {pn:.4f}  {pp:.4f}")
    float_bytes = 4 * template.numel()
    lines.append(f"{len(template)} layers, {template.numel():,} weights")
    lines.append(f"size on disk: {size_on_disk:,} bytes; float32 weights: {float_bytes:,} bytes; "
                 f"compression {float_bytes / max(1, size_on_disk):.1f}x")
    return "\n".join(lines)


def _info(args: argparse.Namespace) -> int:
    from .template import PolarityTemplate

    template = PolarityTemplate.load(args.file)
    print(format_info(template, Path(args.file).stat().st_size))
    return 0


def _proportions(args: argparse.Namespace) -> int:
    from .proportions import save_proportions
    from .template import PolarityTemplate

    _output_file(args.output, args.file, suffix=".json")
    template = PolarityTemplate.load(args.file)
    numel = {name: t.numel() for name, t in template.items()}
    path = save_proportions(template.proportions(), args.output, numel)
    print(f"wrote {path}: proportions of {len(numel)} layers")
    return 0


def _run(args: argparse.Namespace) -> int:
    from .analysis.diagnostics import diagnose, format_flags
    from .analysis.metrics import format_summary, run_metrics, summary_table
    from .experiments import Store, load_study, run_study

    overrides = list(args.set or [])
    if args.data_root:
        overrides.append(f"data_root={json.dumps(args.data_root)}")
    if args.download:
        overrides.append("download=true")
    study = load_study(args.study, overrides, quick=args.quick)
    folder = Path(args.out) if args.out else Path("out") / (study.name + ("-quick" if args.quick else ""))
    args.folder = folder  # for the line an interruption prints
    summary = run_study(study, folder, executor=args.executor, workers=args.workers, device=args.device,
                        address=args.address, progress=not args.no_progress, retry_failed=args.retry_failed)
    print(_sweep_line(study.name, folder, summary))
    with Store.existing(folder) as store:
        runs, epochs, settings = store.runs(), store.epochs(), store.study().get("settings", {})
    threshold = study.thresholds[0]
    if len(epochs):
        print(f"\nMedians over trials; epochs to {threshold:.0%} validation accuracy count the runs that reached it.")
        print(format_summary(summary_table(run_metrics(epochs, threshold), settings), threshold))
    print("\n" + format_flags(diagnose(runs, epochs, settings)))
    print(f"\nresults: {folder / 'results.sqlite'}")
    failed = summary.failed + summary.failed_before
    if failed:
        print(f"polarnet: {failed} of {summary.total} runs failed; their reasons are in `polarnet results {folder}` "
              f"(runs table, column reason). Fix the cause, then run again with --retry-failed", file=sys.stderr)
        return 1
    return 0


def _sweep_line(name: str, folder: Path, summary) -> str:
    """One line on what a ``polarnet run`` did, failed runs counted apart from finished ones."""
    trained = f"{summary.trained} runs trained" + (f" ({summary.failed} failed)" if summary.failed else "")
    kept = summary.skipped - summary.failed_before
    already = f"{kept} already done in {folder}"
    if summary.failed_before:
        already += f", {summary.failed_before} failed earlier and skipped (--retry-failed trains them again)"
    damaged = f", {summary.damaged} damaged in the store and trained again" if summary.damaged else ""
    return f"{name}: {trained}, {already}{damaged}, {summary.seconds:.1f} s"


def _presets(args: argparse.Namespace) -> int:
    from .experiments import estimate_cost, list_presets, load_study
    from .experiments.cost import describe
    from .experiments.executors import default_workers

    cores = default_workers()
    rough = False
    for name, description in list_presets().items():
        full = estimate_cost(load_study(name, validate=False), workers=cores)
        quick = estimate_cost(load_study(name, quick=True, validate=False), workers=cores)
        rough = rough or full["rough"] or quick["rough"]
        print(f"{name:<24} {description}")
        print(f"{'':<24} {full['runs']:,} runs, {describe(full)} on {cores} CPU core{'s' if cores != 1 else ''}; "
              f"--quick: {quick['runs']:,} runs, {describe(quick)}")
    if rough:
        print("(rough: this machine's speed is not measured yet for that engine; `polarnet run` or "
              "`polarnet reproduce` measures it in a few seconds, once)")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    result = reproduce(args.out, args.budget, executor=args.executor, workers=args.workers, device=args.device,
                       address=args.address, data_root=args.data_root, only=args.only or (),
                       progress=not args.no_progress, retry_failed=args.retry_failed, dry_run=args.dry_run)
    if args.dry_run:
        return 0
    ran = [o for o in result.outcomes if o.folder is not None and not o.failed]
    failed = [o for o in result.outcomes if o.failed]
    print(f"\n{len(ran)} studies ran, {len(failed)} failed, {len(result.outcomes) - len(ran) - len(failed)} not run "
          f"(reasons above), {result.seconds:.0f} s")
    if result.scorecard is not None:
        print("wrote " + "\nwrote ".join(map(str, result.scorecard)))
    for outcome in failed:
        print(f"polarnet: {outcome.key}: {outcome.reason}", file=sys.stderr)
    return 0 if result.ok else 1


def _pretrain(args: argparse.Namespace) -> int:
    from .experiments.pretrain import PretrainFailed, pretrain

    classes = args.classes or ()
    _output_file(args.output, suffix=".pt")
    try:
        metrics = pretrain(args.dataset, args.output, arch=args.arch, classes=classes, n_train=args.n_train,
                               epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, input_size=args.input_size,
                           seed=args.seed, device=args.device, data_root=args.data_root, download=args.download,
                           progress=sys.stderr)
    except PretrainFailed as e:
        print(f"polarnet: {e}", file=sys.stderr)
        return 1
    shown = ",".join(map(str, classes))
    print(f"wrote {args.output}: {args.arch} on {args.dataset}{' classes ' + shown if classes else ''}, "
          f"{metrics['n_train']} images, validation accuracy {metrics['val_acc']:.3f}")
    return 0


def _units(text: str) -> list[int]:
    """``1:64`` (inclusive range), ``3,10,15``, or one number; every count >= 1.

    Example:
        >>> _units("3:5"), _units("3,10")
        ([3, 4, 5], [3, 10])
    """
    try:
        if ":" in text:
            lo, hi = (int(v) for v in text.split(":"))
            units = list(range(lo, hi + 1))
        else:
            units = [int(u) for u in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LO:HI (e.g. 1:64), a list (3,10,15) or a number") from None
    if not units:
        raise argparse.ArgumentTypeError(f"{text!r}: an empty range; write LO:HI with LO <= HI (e.g. 1:64)")
    if min(units) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: hidden units must be >= 1")
    return units


def _at_least(low: int):
    """An argparse type: an integer >= ``low``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text}: must be >= {low}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how studies train, the same for ``run`` and ``reproduce``: executor, Ray address,
    workers, device, progress and failed runs."""
    parser.add_argument("--executor", default="local", choices=["local", "ray"])
    parser.add_argument("--address", help="Ray cluster address (with --executor ray)")
    parser.add_argument("--workers", type=_at_least(1), help="processes (local) or CPUs (local Ray); default: all cores")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or lines")
    parser.add_argument("--retry-failed", action="store_true",
                        help="train failed runs again (they are skipped otherwise)")


def _accuracy(text: str) -> float:
    """An argparse type: an accuracy in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number such as 0.8") from None
    if not (math.isfinite(value) and 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"{text}: an accuracy in (0, 1], e.g. 0.8")
    return value


def _theory(args: argparse.Namespace) -> int:
    from .analysis.theory_table import theory_table
    from .experiments import Store

    if args.from_dir:  # check the folder before minutes of Monte Carlo
        Store.existing(args.from_dir, "polarnet run xor5d-width --out FOLDER").close()
    if args.output is not None:
        _output_file(args.output, *([args.from_dir] if args.from_dir else []), suffix=".csv")
    table = theory_table(args.units, args.dims, trials=args.trials, seed=args.seed, folder=args.from_dir)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    out = Path(args.output) if args.output else (Path(args.from_dir) if args.from_dir else Path(".")) / "theory-xor.csv"
    table.to_csv(out, index=False)
    print(f"\nwrote {out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    import errno

    from .analysis.report import build_report, report_paths

    try:
        html_path, md_path = build_report(args.folder, args.output)
    except OSError as e:  # matplotlib's savefig, for one, names no file: say where the report was going
        if e.filename and e.errno != errno.ENOSPC:
            raise
        where = e.filename or report_paths(args.folder, args.output).parent
        fix = "free space there, or write the report elsewhere with -o FOLDER" if e.errno == errno.ENOSPC else \
            "the report is written there (-o FOLDER writes it elsewhere)"
        raise OSError(e.errno, f"{e.strerror or e} while writing the report; {fix}", str(where)) from None
    print(f"wrote {html_path}\nwrote {md_path}")
    _say_unfinished(args.folder)
    return 0


def _say_unfinished(folder: str | Path) -> None:
    """One line on stderr when the study's planned runs are not all in its store."""
    from .experiments import Store

    with Store.existing(folder) as store:
        line = store.unfinished_line()
    if line:
        print(line, file=sys.stderr)


def _compare(args: argparse.Namespace) -> int:
    from .analysis.compare import compare_studies, difference_lines
    from .analysis.report import markdown_table

    if args.output is not None:
        _output_file(args.output, suffix=".md")
    table = compare_studies(args.folder_a, args.folder_b, args.threshold, allow_different=args.allow_different)
    attrs = table.attrs
    differences = "\n".join(difference_lines(table))  # or the line saying there are none
    text = (f"# {attrs['study_a']} ({args.folder_a}) vs {attrs['study_b']} ({args.folder_b})\n\n{differences}\n\n" +
            f"Epochs to {attrs['threshold']:.0%}, success rate, median error at convergence and mean final accuracy; "
            f"_a, _b and b − a.\n\n" + markdown_table(table))
    print(text)
    if args.output:
        _write_text(Path(args.output), text + "\n")
        print(f"\nwrote {args.output}")
    return 0


def _results(args: argparse.Namespace) -> int:
    from .experiments import Store

    folder = Path(args.folder)
    out = Path(args.output) if args.output else folder
    if out.exists() and not out.is_dir():
        raise ValueError(f"-o {args.output}: is a file; -o names a folder for runs.{args.to} and epochs.{args.to}")
    with Store.existing(folder) as store:
        tables = {"runs": store.runs(), "epochs": store.epochs()}
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        path = out / f"{name}.{args.to}"
        if args.to == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        print(f"wrote {path} ({len(frame):,} rows)")
    _say_unfinished(folder)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``polarnet`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="polarnet", description="Fixed-polarity training and polarity transfer.")
    parser.add_argument("--version", action="version", version=f"polarnet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    template = commands.add_parser("template", help="make and inspect polarity template files")
    verbs = template.add_subparsers(dest="verb", required=True)

    extract = verbs.add_parser(
        "extract", help="save the signs of a model's weights as a template file",
        description="Save the signs of a model's weights as a template file. Named weights load through their "
                    "library's cache (torch hub: $TORCH_HOME/hub; Hugging Face: $HF_HUB_CACHE, else $HF_HOME/hub), "
                    "so they work offline once there; with HF_HUB_OFFLINE=1 nothing is downloaded.")
    extract.add_argument("source", help="a .pt/.pth/.safetensors state dict; a torchvision weights name such as "
                                        "AlexNet_Weights.IMAGENET1K_V1; timm:MODEL, timm's pretrained weights "
                                        "(e.g. timm:resnet18.a1_in1k); or hf:ORG/NAME[@REVISION], a Hugging Face "
                                        "model repo's weights file (e.g. hf:prajjwal1/bert-tiny)")
    extract.add_argument("-o", "--output", required=True, help="template file to write (.plt)")
    extract.add_argument("--layers", type=_layers, default="all",
                         help="all | conv | linear | a glob on names | a comma-separated list (default: all)")
    extract.add_argument("--bias", action="store_true", help="include the biases of the selected layers")
    extract.set_defaults(func=_extract)

    info = verbs.add_parser("info", help="per-layer sign proportions and size of a template file")
    info.add_argument("file")
    info.set_defaults(func=_info)

    props = verbs.add_parser("proportions", help="write the SPIN distribution (p0, p-, p+ per layer) as JSON")
    props.add_argument("file")
    props.add_argument("-o", "--output", required=True, help="JSON file to write")
    props.set_defaults(func=_proportions)

    run = commands.add_parser(
        "run", help="run (or resume) a study: a preset name or a TOML file",
        description="Run (or resume) a study: a preset or a TOML file. Your own model: model = "
                    "\"package.module:function\" in the file, or --set model='mypkg.nets:build' (the function gets "
                    "the dataset's arguments and returns an nn.Module). Your own data: dataset = "
                    "\"package.module:function\", a loader returning polarnet.experiments.datasets.Data "
                    "(README: \"Your model, your data\").")
    run.add_argument("study", help="preset name (see `polarnet presets`) or a study TOML file")
    run.add_argument("--out", help="study folder (default: out/<name>[-quick])")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a setting; repeatable")
    run.add_argument("--quick", action="store_true", help="the preset's small version (about a minute on 2 cores)")
    _add_execution_arguments(run)
    run.add_argument("--data-root", help="where image datasets are (same as --set data_root=DIR)")
    run.add_argument("--download", action="store_true", help="let torchvision download missing image data")
    run.set_defaults(func=_run)

    rep = commands.add_parser(
        "reproduce", help="run every study the papers' claims need that this machine can, and write one scorecard",
        description="Plan every study the papers' claims need, print the plan (settings, estimated cost on this "
                    "machine, and why a study can't run here), run what fits the budget into OUT/studies/<study>/ "
                    "(resumable: finished studies are reused), write each study's report and OUT/scorecard.html "
                    "and .md. Exit status 0 when every planned study ran, 1 when one failed.")
    rep.add_argument("--out", default="out/reproduce", help="folder for everything (default: out/reproduce)")
    rep.add_argument("--budget", default="quick", choices=["quick", "cpu", "gpu"],
                     help="quick: reduced settings, minutes on 2 cores; cpu: the paper's settings where a CPU "
                          "manages them, reduced elsewhere; gpu: the paper's settings (default: quick)")
    rep.add_argument("--only", action="append", metavar="STUDY", help="run only this study; repeatable")
    rep.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    _add_execution_arguments(rep)
    rep.add_argument("--data-root", help="where image datasets are looked for first (default: OUT/data)")
    rep.set_defaults(func=_reproduce)

    pre = commands.add_parser("pretrain", help="train a source model to transfer polarities from (offline studies)")
    pre.add_argument("--dataset", required=True, help="fashion_mnist | mnist | cifar10")
    pre.add_argument("--classes", type=_classes, help="comma-separated class indices, e.g. 0,1,2,3,4 (default: all)")
    pre.add_argument("--arch", default="lenet",
                     help="a registered model or your own, 'package.module:function' (default lenet)")
    pre.add_argument("-o", "--output", required=True, help="state-dict file to write (.pt)")
    pre.add_argument("--n-train", type=_at_least(1), default=6000)
    pre.add_argument("--epochs", type=_at_least(1), default=5)
    pre.add_argument("--batch-size", type=_at_least(1), default=100)
    pre.add_argument("--lr", type=float, default=1e-3)
    pre.add_argument("--input-size", type=_at_least(0), default=0, help="resize to this size (0: the data's own)")
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--device", default="auto")
    pre.add_argument("--data-root", help="where the dataset files are (see docs/images.md)")
    pre.add_argument("--download", action="store_true", help="let torchvision download the data")
    pre.set_defaults(func=_pretrain)

    presets = commands.add_parser("presets", help="list the built-in studies with their cost")
    presets.set_defaults(func=_presets)

    theory = commands.add_parser("theory", help="learnability theory (Wang et al. App. D)")
    theory_kind = theory.add_subparsers(dest="kind", required=True)
    xor = theory_kind.add_parser("xor", help="P(a randomly signed Frozen-Net can learn XOR) per hidden units")
    xor.add_argument("--units", type=_units, default=_units("1:64"), help="e.g. 1:64 or 3,10,15 (default 1:64)")
    xor.add_argument("--dims", type=_at_least(2), default=None,
                     help="input dimensions, 2 of them relevant (default: the --from study's, else 5)")
    xor.add_argument("--trials", type=_at_least(1), default=20000, help="Monte Carlo draws per unit count")
    xor.add_argument("--seed", type=int, default=0)
    xor.add_argument("--from", dest="from_dir", help="a finished xor5d-width study folder: add the simulated fraction")
    xor.add_argument("-o", "--output", help="CSV to write (default: theory-xor.csv in --from or here)")
    xor.set_defaults(func=_theory)

    report = commands.add_parser("report", help="write report.html (self-contained) and report.md for a study")
    report.add_argument("folder")
    report.add_argument("-o", "--output", help="a folder, or a file path whose stem names both files (default: the study folder)")
    report.set_defaults(func=_report)

    compare = commands.add_parser("compare", help="two studies side by side (e.g. CPU vs GPU, two reset rules)")
    compare.add_argument("folder_a")
    compare.add_argument("folder_b")
    compare.add_argument("--threshold", type=_accuracy, help="accuracy threshold (default: study A's first)")
    compare.add_argument("-o", "--output", help="also write the table as Markdown here")
    compare.add_argument("--allow-different", action="store_true",
                         help="compare studies of different datasets or models (refused otherwise)")
    compare.set_defaults(func=_compare)

    results = commands.add_parser("results", help="export a study's runs and epochs tables")
    results.add_argument("folder")
    results.add_argument("--to", choices=["csv", "parquet"], default="csv")
    results.add_argument("-o", "--output", help="folder for runs.<ext> and epochs.<ext> (default: the study folder)")
    results.set_defaults(func=_results)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``polarnet`` command; returns the exit status.

    0: done; 1: a study ran but some of its runs failed; 2: bad input (one line on stderr);
    130 / 143: interrupted by SIGINT / SIGTERM (finished runs are kept).

    SIGINT and SIGTERM handlers are installed before the library (and torch) is imported, so
    a signal at any moment gives the one line and the exit status, never a traceback.

    Example:
        >>> main(["template", "info", "/nonexistent.plt"])
        2
    """
    previous = _install_handlers()
    args = None
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except Interrupted as e:
        return _interrupted(args, e.signum)
    except KeyboardInterrupt:
        return _interrupted(args, signal.SIGINT)
    except BrokenPipeError:  # `polarnet … | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except (ValueError, OSError) as e:
        print(f"polarnet: error: {_one_line(e)}", file=sys.stderr)
        return 2
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _install_handlers() -> dict[int, object]:
    """SIGINT/SIGTERM raise :class:`Interrupted` (main thread only); returns the old handlers."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signum)

    return {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}


def _interrupted(args: argparse.Namespace | None, signum: int) -> int:
    """One line saying what was kept and how to go on; the conventional exit status."""
    for s in (signal.SIGINT, signal.SIGTERM):  # a second signal must not break the message
        signal.signal(s, signal.SIG_IGN)
    name = signal.Signals(signum).name
    line = f"polarnet: interrupted by {name}"
    if getattr(args, "func", None) is _run:
        line += f"; finished runs are kept. Run the same command again to resume{_kept(args)}"
    elif getattr(args, "func", None) is _reproduce:
        line += "; finished studies and runs are kept. Run the same command again to resume"
    print(line, file=sys.stderr)
    return 128 + int(signum)


def _kept(args: argparse.Namespace) -> str:
    from .experiments import Store

    folder = getattr(args, "folder", None)
    if folder is None or not (folder / "results.sqlite").is_file():
        return ""
    try:
        with Store.existing(folder) as store:
            counts = store.counts()
    except ValueError:
        return ""
    return f" ({counts.get('done', 0)} runs done in {folder}{_checkpointed(folder)})"


def _checkpointed(folder: Path) -> str:
    """What the interrupted sweep left part-trained: ensembles and runs with a checkpoint, which
    resume at their last checkpointed epoch rather than from the start."""
    from .experiments.sweep import CHECKPOINTS

    files = sorted((folder / CHECKPOINTS).glob("*.pt")) if (folder / CHECKPOINTS).is_dir() else []
    ensembles = sum(f.name.startswith("ensemble-") for f in files)
    runs = len(files) - ensembles
    parts = [f"{n} {what}{'s' if n != 1 else ''}" for n, what in ((ensembles, "ensemble"), (runs, "run")) if n]
    return f"; {' and '.join(parts)} part-trained, resumed from their checkpoints" if parts else ""


def _one_line(error: BaseException) -> str:
    """An exception as the one line the user needs: OS errors name the file and the reason."""
    if isinstance(error, OSError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
