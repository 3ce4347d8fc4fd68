"""Line charts as plain SVG, written by hand (no plotting library needed):
the plots of bench_budget.py and bench_soak.py.

A chart is one or more panels stacked vertically; each panel has a title,
a grid of six ticks on each axis, axis labels, and one polyline per series
with a legend in its top left corner::

    import _plot
    svg = _plot.line_chart([_plot.Series("no budget", [(0, 10.0), (60, 80.0)])],
                           title="Resident memory", x_label="seconds",
                           y_label="resident memory (MiB)")
    svg = _plot.document([_plot.panel(rss, ...), _plot.panel(rates, ...)])
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

COLOURS = ("#c0392b", "#2471a3", "#229954", "#7d3c98")
WIDTH, HEIGHT = 720, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 50


@dataclasses.dataclass
class Series:
    """One polyline: its legend label and its (x, y) points."""

    label: str
    points: Sequence[tuple[float, float]]
    colour: str | None = None


@dataclasses.dataclass
class Panel:
    """The SVG elements of one panel, drawn in (0, 0)-(width, height)."""

    elements: list[str]
    width: int
    height: int


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def panel(series: Sequence[Series], *, title: str, x_label: str, y_label: str,
          width: int = WIDTH, height: int = HEIGHT, x_max: float | None = None,
          y_max: float | None = None, y_fmt: str = "{:.0f}", x_fmt: str = "{:.0f}",
          vlines: Sequence[tuple[float, str]] = (), left: int = LEFT,
          legend: str = "top") -> Panel:
    """One chart of ``series`` from 0 to ``x_max`` (default: the largest
    x) and 0 to ``y_max`` (default: 1.08 times the largest y);
    ``vlines`` are dashed vertical markers ``(x, label)``; ``left`` is the
    margin of the y tick labels; the legend is in the ``"top"`` or
    ``"bottom"`` left corner.  A point whose y is None is left out."""
    if legend not in ("top", "bottom"):
        raise ValueError(f"legend must be 'top' or 'bottom', got {legend!r}")
    W, H, L, R, T, B = width, height, left, RIGHT, TOP, BOTTOM
    xs = [p[0] for s in series for p in s.points]
    ys = [p[1] for s in series for p in s.points if p[1] is not None]
    t_max = x_max if x_max is not None else (max(xs, default=0.0) or 1.0)
    y_top = y_max if y_max is not None else (max(ys, default=0.0) * 1.08 or 1.0)

    def x(t):
        return L + (W - L - R) * t / t_max

    def y(v):
        return H - B - (H - T - B) * v / y_top

    out = [f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{_escape(title)}</text>']
    for i in range(6):
        v = y_top * i / 5
        out.append(f'<line x1="{L}" y1="{y(v):.1f}" x2="{W - R}" y2="{y(v):.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{y(v) + 4:.1f}" text-anchor="end">'
                   f'{y_fmt.format(v)}</text>')
        tv = t_max * i / 5
        out.append(f'<text x="{x(tv):.1f}" y="{H - B + 18}" text-anchor="middle">'
                   f'{x_fmt.format(tv)}</text>')
    out.append(f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>')
    out.append(f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">'
               f'{_escape(x_label)}</text>')
    out.append(f'<text x="18" y="{(T + H - B) / 2}" text-anchor="middle" '
               f'transform="rotate(-90 18 {(T + H - B) / 2})">{_escape(y_label)}</text>')
    for t, label in vlines:
        out.append(f'<line x1="{x(t):.1f}" y1="{T}" x2="{x(t):.1f}" y2="{H - B}" '
                   f'stroke="#888" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{x(t) + 4:.1f}" y="{T + 12}" fill="#555">{_escape(label)}</text>')
    for i, s in enumerate(series):
        c = s.colour or COLOURS[i % len(COLOURS)]
        pts = " ".join(f"{x(px):.1f},{y(py):.1f}" for px, py in s.points if py is not None)
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="2" points="{pts}"/>')
        row = T + 12 + 18 * i if legend == "top" else H - B - 12 - 18 * (len(series) - 1 - i)
        out.append(f'<line x1="{L + 20}" y1="{row}" x2="{L + 44}" '
                   f'y2="{row}" stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{L + 50}" y="{row + 4}">{_escape(s.label)}</text>')
    return Panel(out, W, H)


def document(panels: Sequence[Panel]) -> str:
    """The panels stacked top to bottom in one SVG document."""
    width = max(p.width for p in panels)
    height = sum(p.height for p in panels)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">']
    top = 0
    for p in panels:
        if top:
            out.append(f'<g transform="translate(0,{top})">')
        out.extend(p.elements)
        if top:
            out.append("</g>")
        top += p.height
    out.append("</svg>")
    return "\n".join(out) + "\n"


def line_chart(series: Sequence[Series], **kwargs) -> str:
    """A one-panel SVG document (``panel``'s arguments)."""
    return document([panel(series, **kwargs)])
