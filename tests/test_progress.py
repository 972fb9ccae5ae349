"""Tests for polarnet.experiments.progress: plain lines off a terminal, a bar on one, silence when off."""

from __future__ import annotations

import io
import re

from polarnet.experiments.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_with_done_total_and_failures():
    out = io.StringIO()
    p = Progress(10, stream=out, every=0)
    p.update(3)
    p.update(2, failed=1)
    p.update(5, failed=2)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("runs 3/10 (30%), elapsed ")
    assert "failed" not in lines[0]
    assert lines[1].startswith("runs 5/10 (50%), 1 failed, elapsed ")
    assert lines[2].startswith("runs 10/10 (100%), 3 failed, elapsed ")
    for line in lines:
        assert re.search(r"elapsed \d+s, ETA (\d+s|--)$", line), line
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()  # no bar, no escape codes
    assert (p.done, p.failed) == (10, 3)


def test_finished_eta_is_zero():
    out = io.StringIO()
    p = Progress(4, stream=out, every=0)
    p.update(4)
    assert out.getvalue().rstrip().endswith("ETA 0s")


def test_lines_are_rate_limited_but_the_last_is_always_printed():
    out = io.StringIO()
    p = Progress(10, stream=out, every=3600)
    p.update(4)
    p.update(4)
    assert out.getvalue() == ""
    p.update(2)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runs 10/10 (100%)")


def test_resumed_progress_starts_from_done():
    out = io.StringIO()
    p = Progress(10, done=6, stream=out, every=0)
    p.update(1)
    assert out.getvalue().startswith("runs 7/10 (70%)")


def test_disabled_prints_nothing_but_counts():
    out = io.StringIO()
    p = Progress(10, stream=out, every=0, enabled=False)
    p.update(5, failed=1)
    p.update(5)
    p.close()
    assert out.getvalue() == ""
    assert (p.done, p.failed) == (10, 1)


def test_disabled_on_a_terminal_prints_nothing():
    out = _Terminal()
    p = Progress(10, stream=out, every=0, enabled=False)
    assert p.bar is None
    p.update(10)
    p.close()
    assert out.getvalue() == ""


def test_terminal_gets_a_bar():
    out = _Terminal()
    p = Progress(10, stream=out, every=0)
    assert p.bar is not None
    p.update(4, failed=1)
    p.close()
    text = out.getvalue()
    assert "4/10" in text
    assert "1 failed" in text
    assert "runs 4/10" not in text  # the bar, not plain lines


def test_zero_total():
    out = io.StringIO()
    p = Progress(0, stream=out, every=3600)
    p.update(0)
    assert out.getvalue().startswith("runs 0/0 (0%)")


def test_eta_before_any_run_finished_is_unknown_not_nan():
    """Issue 8: with no finished work yet (rate 0) the line said ``ETA nans``."""
    out = io.StringIO()
    p = Progress(10, stream=out, every=0)
    p.advance(0.4)  # a fraction of a run: nothing whole done yet
    p.update(0, failed=0)
    resumed = Progress(10, done=6, stream=out, every=0)
    resumed.advance(0.0)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    for line in lines:
        assert "nan" not in line and line.endswith("ETA --"), line
    assert lines[2].startswith("runs 6/10 (60%)")


def test_eta_of_a_finished_resumed_study_is_zero():
    out = io.StringIO()
    Progress(3, done=3, stream=out, every=0).update(0)
    assert out.getvalue().rstrip().endswith("ETA 0s")
