"""Every CUDA test and benchmark in one command, with its logs and a summary under one folder.

Steps, each with its own time budget (printed first) inside a whole of ``--budget`` seconds
(default 450: under 8 minutes on one H100, the machine the budgets are sized for):

1. ``pytest -q -k cuda``: the CUDA tests (counted: passed, failed, skipped);
2. ``bench_freeze.py --device cuda --amp``: enforcement's share of a bf16 step, syncs per step;
3. ``bench_images.py --device cuda``: Frozen-Net's images per second against a plain loop;
4. ``bench_alexnet_cell.py --trials 1 --epochs 2``: a short ``fmnist-alexnet`` cell at full
   size (227 px; needs real Fashion-MNIST), its preset's wall time extrapolated.

Each step writes ``DIR/<step>.log``; ``DIR/summary.md`` and ``DIR/summary.json`` are rewritten
after every step, so a run stopped at a limit still leaves a summary of what finished. The
summary holds the device's facts (``nvidia-smi``, GPU name, driver, ``torch.version.cuda``),
the commit, each step's time, exit status and parsed result (test counts; each benchmark's
``PASS``/``MISS`` lines). A step that outruns its budget is stopped and marked ``timed out``.

Without a CUDA device the script writes a summary that says so, prints
``no CUDA device: nothing to check`` and exits 2. Otherwise it exits 0 when every step ran
and exited 0, else 1; a benchmark's ``MISS`` fails a step only with ``--strict``, as in
``make bench STRICT=1``.

The children run on this interpreter (``--python`` to change it); where ``polarnet`` is not
installed there, ``src/`` is put on their ``PYTHONPATH``, so a bare machine with torch needs no
install. ``--commit`` names the commit where the folder has no git (a copied working tree).

    python benchmarks/gpu_check.py --out DIR [--budget 450] [--steps pytest,bench_freeze,...]
                                   [--strict] [--commit HASH] [--python PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NO_CUDA = "no CUDA device: nothing to check"


@dataclass(frozen=True)
class Step:
    """One check: its name (also its log's), the arguments after the interpreter, its budget."""

    name: str
    args: tuple[str, ...]
    budget_s: float


#: sized for one H100 (the whole under 8 minutes): pytest collects the whole suite before it
#: selects (on 4 workers, since the compiled-path tests each compile; a module that fails to
#: import elsewhere is counted as an error without stopping the CUDA tests), torch.compile's
#: first compilation falls inside bench_freeze and bench_images, and the AlexNet cell trains at
#: 227 px with 10,000 validation images an epoch.
STEPS = (
    Step("pytest", ("-m", "pytest", "-q", "-k", "cuda", "-p", "no:cacheprovider", "-n", "4",
                    "--continue-on-collection-errors"), 150),
    Step("bench_freeze", ("benchmarks/bench_freeze.py", "--device", "cuda", "--amp"), 80),
    Step("bench_images", ("benchmarks/bench_images.py", "--device", "cuda"), 70),
    Step("bench_alexnet_cell", ("benchmarks/bench_alexnet_cell.py", "--device", "cuda", "--trials", "1",
                                "--epochs", "2"), 130),
)


@dataclass
class Outcome:
    """What one step did: ``status`` is ``pending``, ``passed``, ``failed``, ``timed out`` or
    ``not run`` (no time left); ``result`` holds the parsed counts or targets."""

    name: str
    command: str
    budget_s: float
    status: str = "pending"
    exit_code: int | None = None
    seconds: float | None = None
    log: str = ""
    result: dict = field(default_factory=dict)


_COUNT = re.compile(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)\b")
_TARGET = re.compile(r"^(?P<name>.+?): (?P<value>.+?)  \((?:target|goal) (?P<op>\S+) (?P<bound>[^)]*)\)  "
                     r"(?P<verdict>PASS|MISS|GOAL MET|GOAL MISSED)(?:  \((?P<notes>.*)\))?$")


def parse_pytest(text: str) -> dict[str, int]:
    """The counts of pytest's last summary line (``error`` and ``errors`` both as ``errors``).

    Example:
        >>> parse_pytest("....s\\n3 passed, 1 skipped, 1200 deselected in 41.20s\\n")
        {'passed': 3, 'skipped': 1, 'deselected': 1200}
        >>> parse_pytest("collecting ...")  # stopped before its summary
        {}
    """
    for line in reversed(text.splitlines()):
        counts = _COUNT.findall(line)
        if counts and " in " in line:
            return {("errors" if kind.startswith("error") else kind): int(n) for n, kind in counts}
    return {}


def parse_targets(text: str) -> list[dict[str, str]]:
    """Each ``PASS``/``MISS`` (or goal) line a benchmark printed through ``_report.Report``.

    Example:
        >>> parse_targets("syncs per train step: 0  (target <= 0)  PASS\\nother output")
        [{'name': 'syncs per train step', 'value': '0', 'op': '<=', 'bound': '0', 'verdict': 'PASS', 'notes': ''}]
    """
    return [{**m.groupdict(), "notes": m["notes"] or ""} for line in text.splitlines()
            if (m := _TARGET.match(line.strip()))]


def judge(step: str, exit_code: int | None, timed_out: bool, text: str) -> tuple[str, dict]:
    """A finished step's status and parsed result from its exit code and output.

    Example:
        >>> judge("pytest", 0, False, "..\\n2 passed in 2.00s")
        ('passed', {'counts': {'passed': 2}})
        >>> judge("bench_images", None, True, "x: 1%  (target >= -3%)  PASS")[0]
        'timed out'
        >>> judge("bench_freeze", 1, False, "Traceback ...\\nRuntimeError: Found no NVIDIA driver\\n")[1]
        {'targets': [], 'last_line': 'RuntimeError: Found no NVIDIA driver'}
    """
    if step == "pytest":
        result: dict = {"counts": parse_pytest(text)}
    else:
        result = {"targets": parse_targets(text)}
        missing = [line for line in text.splitlines() if "needs real Fashion-MNIST" in line]
        if missing:
            result["note"] = missing[-1].strip()
    status = "timed out" if timed_out else "passed" if exit_code == 0 else "failed"
    if status != "passed" and not result.get("counts"):  # a traceback's last line usually names the cause
        result["last_line"] = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")
    return status, result


def render(summary: dict) -> str:
    """``summary.md``: the device, the commit, then one line per step and its parsed result.

    Example:
        >>> print(render({"verdict": "no CUDA device: nothing to check", "commit": "abc",
        ...               "device": {"cuda": False}, "steps": []}).splitlines()[0])
        # GPU check: no CUDA device: nothing to check
    """
    device = summary["device"]
    lines = [f"# GPU check: {summary['verdict']}", "", f"- commit: {summary['commit']}"]
    if device.get("cuda"):
        lines.append(f"- device: {device.get('name')}, driver {device.get('driver')}, CUDA {device.get('cuda_version')}, "
                     f"torch {device.get('torch')}")
    else:
        lines.append(f"- device: no CUDA ({device.get('reason', 'torch sees none')}); torch {device.get('torch')}")
    if summary.get("budget_s"):
        lines.append(f"- budget: {summary['budget_s']:.0f} s in all; took {summary.get('seconds', 0):.0f} s")
    if summary["steps"]:
        lines += ["", "| step | status | time | budget | result |", "|---|---|---|---|---|"]
    for s in summary["steps"]:
        took = "" if s["seconds"] is None else f"{s['seconds']:.0f} s"
        lines.append(f"| {s['name']} | {s['status']} | {took} | {s['budget_s']:.0f} s | {_result_text(s['result'])} |")
    for s in summary["steps"]:
        for t in s["result"].get("targets", []):
            notes = f" ({t['notes']})" if t["notes"] else ""
            lines.append(f"- {s['name']}: {t['name']}: {t['value']} ({t['op']} {t['bound']}) **{t['verdict']}**{notes}")
    return "\n".join(lines) + "\n"


def _result_text(result: dict) -> str:
    if "counts" in result:
        return ", ".join(f"{n} {k}" for k, n in result["counts"].items() if k != "deselected") or "no summary line"
    verdicts = [t["verdict"] for t in result.get("targets", [])]
    text = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts)) or "no PASS/MISS line"
    extra = [result[k] for k in ("note", "last_line") if result.get(k)]
    return "; ".join([text, *extra])


def write_summary(out: Path, summary: dict) -> None:
    """(Re)write ``summary.json`` and ``summary.md`` in ``out``, each through a temporary file,
    so a run killed mid-write still leaves the previous whole summary.

    Example:
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> write_summary(d, {"verdict": "x", "commit": "c", "device": {}, "steps": []})
        >>> sorted(p.name for p in d.iterdir())
        ['summary.json', 'summary.md']
    """
    for name, text in (("summary.json", json.dumps(summary, indent=2)), ("summary.md", render(summary))):
        partial = out / (name + ".partial")
        partial.write_text(text)
        os.replace(partial, out / name)


_FACTS = r"""
import importlib.util, json, sys
facts = {"python": sys.executable, "polarnet_installed": importlib.util.find_spec("polarnet") is not None}
try:
    import torch
except ImportError as e:
    facts.update(cuda=False, reason=f"no torch: {e}")
else:
    facts.update(torch=torch.__version__, cuda_version=torch.version.cuda, cuda=torch.cuda.is_available())
    if facts["cuda"]:
        p = torch.cuda.get_device_properties(0)
        facts.update(name=p.name, count=torch.cuda.device_count(), memory_gib=round(p.total_memory / 2**30, 1),
                     capability=f"{p.major}.{p.minor}")
    else:
        facts["reason"] = "torch.cuda.is_available() is False"
print(json.dumps(facts))
"""


def device_facts(python: str, out: Path) -> dict:
    """The device as the children will see it (asked in a child, so this process holds no CUDA
    context), its driver from ``nvidia-smi``, whose whole report goes to ``out/nvidia-smi.log``.

    Example:
        >>> import tempfile
        >>> facts = device_facts("/no/such/python", Path(tempfile.mkdtemp()))
        >>> facts["cuda"], facts["reason"].startswith("/no/such/python could not report its torch")
        (False, True)
    """
    try:
        done = subprocess.run([python, "-c", _FACTS], capture_output=True, text=True, timeout=120)
        facts = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as e:
        facts = {"cuda": False, "reason": f"{python} could not report its torch ({type(e).__name__}: {e})"}
    try:
        smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=60).stdout
        (out / "nvidia-smi.log").write_text(smi)
        query = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=60).stdout.strip().splitlines()
        facts["driver"] = query[0] if query else None
    except (OSError, subprocess.TimeoutExpired):
        facts["driver"] = None  # no nvidia-smi: torch's answer still decides
    return facts


def commit(given: str | None) -> str:
    """``given``, else HEAD's hash (``+dirty`` with uncommitted changes), else why there is none.

    Example:
        >>> commit("d09a3ba")
        'd09a3ba'
    """
    if given:
        return given
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=30)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (no git here: pass --commit)"
    if head.returncode:
        return "unknown (not a git checkout: pass --commit)"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def run_step(step: Step, python: str, env: dict[str, str], out: Path, timeout: float, strict: bool) -> Outcome:
    """Run one step with its output in ``out/<name>.log``, stopped (its whole process group)
    after ``timeout`` seconds.

    Example:
        >>> import tempfile
        >>> step = Step("pytest", ("-c", "print('2 passed in 0.01s')"), 30)
        >>> done = run_step(step, sys.executable, dict(os.environ), Path(tempfile.mkdtemp()), 30, False)
        >>> done.status, done.exit_code, done.result
        ('passed', 0, {'counts': {'passed': 2}})
    """
    args = [python, *step.args, *(["--strict"] if strict and step.name != "pytest" else [])]
    outcome = Outcome(step.name, " ".join(args), step.budget_s, log=f"{step.name}.log")
    log = out / outcome.log
    start = time.monotonic()
    with open(log, "w") as f:
        f.write(f"$ {outcome.command}   (timeout {timeout:.0f} s)\n")
        f.flush()
        child = subprocess.Popen(args, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = child.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)  # its own session: the step's workers go with it
            child.wait()
            code, timed_out = None, True
    outcome.seconds, outcome.exit_code = time.monotonic() - start, code
    text = log.read_text(errors="replace")
    outcome.status, outcome.result = judge(step.name, code, timed_out, text)
    if timed_out:
        with open(log, "a") as f:
            f.write(f"\n[gpu_check: stopped after {timeout:.0f} s, its budget]\n")
    return outcome


def main(argv: list[str] | None = None) -> int:
    """Run the checks as the command line says; return the exit status (0, 1, or 2: no CUDA).

    Example (here without a GPU: the summary says so and the status is 2):
        >>> import tempfile
        >>> d = Path(tempfile.mkdtemp())
        >>> main(["--out", str(d), "--python", "/no/such/python"])  # doctest: +ELLIPSIS
        no CUDA device: nothing to check (...); summary in ...summary.md
        2
        >>> json.loads((d / "summary.json").read_text())["verdict"]
        'no CUDA device: nothing to check'
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the logs and the summary")
    parser.add_argument("--budget", type=float, default=450, help="seconds for all steps (default 450)")
    parser.add_argument("--steps", default=",".join(s.name for s in STEPS),
                        help=f"comma-separated subset of {', '.join(s.name for s in STEPS)}")
    parser.add_argument("--strict", action="store_true", help="a benchmark's MISS fails its step")
    parser.add_argument("--commit", help="the commit checked, where this folder has no git")
    parser.add_argument("--python", default=sys.executable, help="the interpreter for every step")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(chosen) - {s.name for s in STEPS})
    if unknown:
        parser.error(f"--steps: unknown {', '.join(unknown)}; choose from {', '.join(s.name for s in STEPS)}")
    steps = [s for s in STEPS if s.name in chosen]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    facts = device_facts(args.python, out)
    summary: dict = {"verdict": "running", "commit": commit(args.commit), "device": facts, "budget_s": args.budget,
                     "steps": []}
    if not facts.get("cuda"):
        summary["verdict"] = NO_CUDA
        write_summary(out, summary)
        print(f"{NO_CUDA} ({facts.get('reason', '')}); summary in {out / 'summary.md'}")
        return 2
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if not facts.get("polarnet_installed"):  # a bare machine's torch: run the checkout's source
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    print(f"GPU check on {facts['name']} (driver {facts.get('driver')}, CUDA {facts['cuda_version']}, "
          f"torch {facts['torch']}), commit {summary['commit']}; logs in {out}")
    print(f"budget {args.budget:.0f} s in all: " + ", ".join(f"{s.name} {s.budget_s:.0f} s" for s in steps))
    outcomes = [Outcome(s.name, " ".join(s.args), s.budget_s) for s in steps]
    summary["steps"] = [asdict(o) for o in outcomes]
    write_summary(out, summary)
    for i, step in enumerate(steps):
        left = args.budget - (time.monotonic() - started)
        if left < 10:
            outcomes[i].status = "not run"
            outcomes[i].result = {"note": f"no time left in the {args.budget:.0f} s budget"}
        else:
            print(f"-- {step.name} (up to {min(step.budget_s, left):.0f} s) ...", flush=True)
            outcomes[i] = run_step(step, args.python, env, out, min(step.budget_s, left), args.strict)
            print(f"   {outcomes[i].status} in {outcomes[i].seconds:.0f} s: {_result_text(outcomes[i].result)}")
        summary["steps"] = [asdict(o) for o in outcomes]
        summary["seconds"] = time.monotonic() - started
        write_summary(out, summary)
    ok = all(o.status == "passed" for o in outcomes)
    summary["verdict"] = "all steps passed" if ok else "failed: " + ", ".join(
        f"{o.name} {o.status}" for o in outcomes if o.status != "passed")
    write_summary(out, summary)
    print(f"GPU check: {summary['verdict']} in {summary['seconds']:.0f} s; summary in {out / 'summary.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
