"""The HTML that polarnet writes, opened in a real headless Chromium: it loads with no console
errors, every figure loaded and is visible (in a laptop's and a phone's width), nothing (a wide
table) makes the page wider than the window, and the page shows its title.

Chromium comes from Debian's packages (``.ci/install-browser``, run by ``make venv``); without it
these tests are skipped, or fail when ``POLARNET_REQUIRE_BROWSER=1`` (for CI, where a skip would
hide it). The browser is driven over its DevTools pipe by ``tests/headless_chromium.py`` (standard
library only).

A new HTML page joins every check with one line in :func:`pages`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
from headless_chromium import INSTALL, Chromium, find_chromium

from polarnet.cli import main
from polarnet.experiments import load_study, run_study


class Html(NamedTuple):
    """A page to check: its file, and the title it must show (None: whatever its <title> says)."""

    path: Path
    title: str | None = None
    min_figures: int = 0


def _report(study: Path) -> Html:
    assert main(["report", str(study)]) == 0
    return Html(study / "report.html", "polarnet report: xor5d", min_figures=3)


def _scorecard(study: Path) -> Html:
    scorecard = pytest.importorskip("polarnet.analysis.scorecard",
                                    reason="polarnet.analysis.scorecard does not exist yet (issue 12)")
    report = study / "report.html"  # linked from the scorecard when the report's test wrote it
    status = scorecard.StudyStatus("xor5d", study, report=report if report.is_file() else None, quick=True)
    html, _ = scorecard.build_scorecard(study / "reproduce", {"xor5d": status}, budget="quick", mc_trials=200)
    return Html(html, min_figures=1)  # Fig. 4A (theory) at least


def pages() -> list[tuple[str, Callable[[Path], Html]]]:
    """Every HTML page polarnet writes: (name, builder taking the study folder)."""
    return [
        ("report", _report),
        ("scorecard", _scorecard),
    ]


@pytest.fixture(scope="module")
def browser():
    executable = find_chromium()
    if executable is None:
        where = (f"POLARNET_CHROMIUM={os.environ['POLARNET_CHROMIUM']} is not an executable"
                 if os.environ.get("POLARNET_CHROMIUM") else "no chromium-headless-shell or chromium on PATH")
        message = f"no headless Chromium ({where}); install it with: {INSTALL}"
        if os.environ.get("POLARNET_REQUIRE_BROWSER"):
            pytest.fail(message + " (POLARNET_REQUIRE_BROWSER is set)")
        pytest.skip(message)
    with Chromium(executable) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """A tiny finished xor5d study (two sizes, two trials, three epochs): a report with every
    kind of figure it draws for one reset rule."""
    folder = tmp_path_factory.mktemp("browser-study")
    run_study(load_study("xor5d", ["val_size=200", "epochs=3", "trials=2", "sizes=[8, 20]"]), folder, workers=1,
              progress=False)
    return folder


@pytest.mark.parametrize("build", [build for _, build in pages()], ids=[name for name, _ in pages()])
def test_page_loads_cleanly_and_shows_every_figure(build, study, browser) -> None:
    html = build(study)
    page = browser.open(html.path)
    assert page.errors == [], f"{html.path.name}: console errors in {browser.version}"
    assert page.title.strip(), f"{html.path.name} has no <title>"
    if html.title is not None:
        assert page.title == html.title
    assert page.title in page.text, f"{html.path.name} does not show its title {page.title!r}"
    counts = {len(figures) for figures in page.figures.values()}
    assert len(counts) == 1 and counts.pop() >= html.min_figures, f"{html.path.name}: figures {counts}"
    assert page.figure_problems() == []
    assert page.overflow_problems() == [], f"{html.path.name}: a table or text wider than the page"


# -- the checks themselves: a page with every fault they look for ------------------------------------
_PIXEL = ("data:image/png;base64,"  # a 1 × 1 PNG
          "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def test_the_checks_find_every_fault_of_a_broken_page(browser, tmp_path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text(f"""<!DOCTYPE html><html><head><title>Broken</title></head><body><h1>Broken</h1>
<img alt="fine" src="{_PIXEL}" width="40">
<img alt="missing" src="missing.png">
<div style="display: none"><img alt="in a hidden block" src="{_PIXEL}"></div>
<img alt="invisible" src="{_PIXEL}" style="visibility: hidden">
<img alt="too wide" src="{_PIXEL}" width="3000">
<svg width="20" height="20"><rect width="20" height="20"/></svg>
<script>console.log("not an error"); console.warn("nor this"); console.error("drawing failed", 3);
null.width;</script></body></html>""")
    page = browser.open(broken, widths=(800,))
    assert page.title == "Broken" and "Broken" in page.text
    assert len(page.errors) == 3
    assert any("missing.png" in e for e in page.errors)  # the browser's log
    assert "console.error: drawing failed 3" in page.errors
    assert any(e.startswith("uncaught: TypeError") for e in page.errors)
    problems = "\n".join(page.figure_problems())
    assert len(page.figures[800]) == 6 and len(page.figure_problems()) == 4, problems
    assert "'missing' at 800 px wide: did not load" in problems
    assert "'in a hidden block' at 800 px wide: is hidden" in problems
    assert "'invisible' at 800 px wide: is hidden" in problems
    assert "'too wide' at 800 px wide: spills out of the page" in problems
    assert "'fine'" not in problems and "<svg>" not in problems
    assert page.overflow_problems() == ["at 800 px wide the page is 3008 px wide: something runs 2208 px off its "
                                        "right edge"]  # the image 3000 px wide, after the body's 8 px margin


def test_the_overflow_check_finds_a_table_wider_than_the_page_and_not_one_that_scrolls(browser, tmp_path) -> None:
    row = f'<table><tr><th>a_column</th><td style="white-space: nowrap">{"wide " * 300}</td></tr></table>'
    wide, scrolls = tmp_path / "wide.html", tmp_path / "scrolls.html"
    wide.write_text(f"<!DOCTYPE html><html><head><title>W</title></head><body>{row}</body></html>")
    scrolls.write_text(f'<!DOCTYPE html><html><head><title>S</title></head><body><div style="overflow-x: auto">{row}'
                       "</div></body></html>")
    assert len(browser.open(wide, widths=(1280,)).overflow_problems()) == 1
    assert browser.open(scrolls, widths=(1280,)).overflow_problems() == []
