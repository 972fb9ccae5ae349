"""One colour per condition of a study, every two of them told apart at a glance.

A condition keeps its preferred colour (the one it declares, stored with the study: the paper's
for the presets, e.g. Wang et al. Fig. 1's red, green and blue; see
:func:`polarnet.analysis.looks.condition_looks`) unless an earlier condition of the same study already has one
within :data:`MIN_DISTANCE` of it; then it, like a condition with no preferred colour, takes the
first colour of :data:`PALETTE` far enough from every colour already given. Distances are
CIEDE2000 colour differences (:func:`color_distance`), which follow how far apart people see
two colours (matplotlib's default red and brown are 16 apart, its red and green 72).

A study with more conditions than the palette can keep apart reuses its least used colours;
figures then tell the repeats apart by line style (:func:`line_styles`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.colors

__all__ = ["MIN_DISTANCE", "PALETTE", "color_distance", "condition_colors", "line_styles"]

#: the smallest CIEDE2000 difference between two conditions' colours in one study
MIN_DISTANCE = 25.0
#: colours a condition without a (usable) preferred one draws from, in order: matplotlib's
#: ten (less grey, kept for the references' lines), then darker and lighter ones
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
           "#000000", "#e6ab02", "#0a5c36", "#7b2d8e", "#f781bf", "#a6cee3", "#b2df8a", "#5b3a00", "#fdbf6f")
#: line styles for conditions whose colour repeats an earlier one's
_DASHES = ["-", "--", ":", "-."]


def _lab(color: str) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of a matplotlib colour."""
    rgb = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in matplotlib.colors.to_rgb(color)]
    xyz = [sum(m * c for m, c in zip(row, rgb)) / white for row, white in zip(
        ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505)), (0.95047, 1.0, 1.08883))]
    f = [v ** (1 / 3) if v > (6 / 29) ** 3 else v / (3 * (6 / 29) ** 2) + 4 / 29 for v in xyz]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def _ciede2000(lab1: tuple[float, float, float], lab2: tuple[float, float, float]) -> float:
    """The CIEDE2000 difference of two L*a*b* colours (Sharma, Wu and Dalal 2005).

    Example:
        >>> round(_ciede2000((50, 2.6772, -79.7751), (50, 0, -82.7485)), 4)  # Sharma et al.'s pair 1
        2.0425
    """
    (l1, a1, b1), (l2, a2, b2) = lab1, lab2
    mean_c = (math.hypot(a1, b1) + math.hypot(a2, b2)) / 2
    g = 0.5 * (1 - math.sqrt(mean_c ** 7 / (mean_c ** 7 + 25 ** 7)))
    a1, a2 = a1 * (1 + g), a2 * (1 + g)
    c1, c2 = math.hypot(a1, b1), math.hypot(a2, b2)
    h1, h2 = math.degrees(math.atan2(b1, a1)) % 360, math.degrees(math.atan2(b2, a2)) % 360
    dh = 0.0 if c1 * c2 == 0 else (h2 - h1 + 180) % 360 - 180
    d_big_h = 2 * math.sqrt(c1 * c2) * math.sin(math.radians(dh / 2))
    mean_l, mean_cp = (l1 + l2) / 2, (c1 + c2) / 2
    if c1 * c2 == 0:
        mean_h = h1 + h2
    elif abs(h1 - h2) <= 180:
        mean_h = (h1 + h2) / 2
    else:
        mean_h = (h1 + h2 + 360) / 2 if h1 + h2 < 360 else (h1 + h2 - 360) / 2
    t = (1 - 0.17 * math.cos(math.radians(mean_h - 30)) + 0.24 * math.cos(math.radians(2 * mean_h))
         + 0.32 * math.cos(math.radians(3 * mean_h + 6)) - 0.20 * math.cos(math.radians(4 * mean_h - 63)))
    s_l = 1 + 0.015 * (mean_l - 50) ** 2 / math.sqrt(20 + (mean_l - 50) ** 2)
    s_c, s_h = 1 + 0.045 * mean_cp, 1 + 0.015 * mean_cp * t
    r_t = (-2 * math.sqrt(mean_cp ** 7 / (mean_cp ** 7 + 25 ** 7))
           * math.sin(math.radians(60 * math.exp(-(((mean_h - 275) / 25) ** 2)))))
    dl, dc, dhh = (l2 - l1) / s_l, (c2 - c1) / s_c, d_big_h / s_h
    return math.sqrt(dl ** 2 + dc ** 2 + dhh ** 2 + r_t * dc * dhh)


def color_distance(a: str, b: str) -> float:
    """How different two colours look: their CIEDE2000 difference (0: the same; about 2: just
    noticeable side by side; above 25 two lines are told apart at a glance).

    Example:
        >>> round(color_distance("#d62728", "#8c564b")), round(color_distance("#d62728", "#2ca02c"))
        (16, 72)
    """
    return _ciede2000(_lab(a), _lab(b))


def condition_colors(conditions: Sequence[str], preferred: Mapping[str, str] | None = None) -> dict[str, str]:
    """A colour per condition, in the order given (the study's), every two at least
    :data:`MIN_DISTANCE` apart while :data:`PALETTE` holds enough such colours.

    Args:
        conditions: the study's conditions, in its order (duplicates are ignored).
        preferred: each condition's own colour where it has one (default: the colours the
            conditions declare, :func:`polarnet.analysis.looks.declared_look`; a report passes
            those its study stored).

    Example:
        >>> colors = condition_colors(["a", "b", "my_condition"], {"a": "#d62728", "b": "#8c564b"})
        >>> colors["a"], colors["b"] != "#8c564b"  # brown is too close to red
        ('#d62728', True)
    """
    if preferred is None:
        from .looks import declared_look

        preferred = {c: color for c in conditions if (color := declared_look(c)["color"]) is not None}
    given: dict[str, str] = {}
    for condition in dict.fromkeys(conditions):
        own = preferred.get(condition)
        if own is not None and all(color_distance(own, c) >= MIN_DISTANCE for c in given.values()):
            given[condition] = own
            continue
        taken = list(given.values()) + [c for name, c in preferred.items() if name in conditions and name not in given
                                         and name != condition]  # leave the later conditions their own colours
        far = [c for c in PALETTE if all(color_distance(c, t) >= MIN_DISTANCE for t in taken)]
        uses = list(given.values())
        given[condition] = far[0] if far else min(  # the least used colour, then the farthest from the rest
            PALETTE, key=lambda c: (uses.count(c), -min((color_distance(c, t) for t in uses if t != c),
                                                         default=math.inf)))
    return given


def line_styles(colors: Mapping[str, str]) -> dict[str, str]:
    """A line style per condition: solid, unless an earlier condition has the same colour
    (a study with more conditions than distinct colours), then dashed, dotted, …

    Example:
        >>> line_styles({"a": "#000000", "b": "#ff0000", "c": "#000000"})
        {'a': '-', 'b': '-', 'c': '--'}
    """
    seen: dict[str, int] = {}
    out = {}
    for condition, color in colors.items():
        out[condition] = _DASHES[seen.get(color, 0) % len(_DASHES)]
        seen[color] = seen.get(color, 0) + 1
    return out
