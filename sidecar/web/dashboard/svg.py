"""Server-rendered SVG charts: no script, no CDN, readable without colour (values are written on bars).

Every text is escaped; the markup is returned as `markupsafe.Markup` so templates embed it as is.
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup

PALETTE = ("#2f6fb0", "#e07b39", "#3a9b5c", "#b0413e", "#7a5cb0", "#8c8c8c", "#c4a000", "#3aa0a8")
GOOD, WARN, BAD = "#3a9b5c", "#d9a400", "#b0413e"
NEUTRAL = PALETTE[0]  # a share that is neither good nor bad in itself (e.g. qualified %)


def _text(x: float, y: float, text: str, anchor: str = "middle", size: int = 11, cls: str = "") -> str:
    extra = f' class="{cls}"' if cls else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}"{extra}>'
            f"{escape(text)}</text>")


def stacked_bars(title: str, labels: list[str], series: dict[str, list[int]],
                 colors: dict[str, str] | None = None, width: int = 640, height: int = 260,
                 legend: bool = True) -> Markup:
    """Vertical bars, one per label, stacked by series; a legend names the series (unless they are the labels)."""
    left, right, top, bottom = 36, 12, 28, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    peak = max([*totals, 1])
    step = plot_w / max(len(labels), 1)
    bar_w = max(4.0, step * 0.7)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(title)}" class="chart">', f"<title>{escape(title)}</title>",
             _text(left, 16, title, "start", 13, "chart-title"),
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" stroke="#999"/>',
             _text(left - 6, top + 4, str(peak), "end", 10), _text(left - 6, top + plot_h, "0", "end", 10)]
    color_of = {name: (colors or {}).get(name, PALETTE[i % len(PALETTE)]) for i, name in enumerate(series)}
    for i, label in enumerate(labels):
        x, base = left + i * step + (step - bar_w) / 2, float(top + plot_h)
        for name, values in series.items():
            h = values[i] / peak * plot_h
            if h > 0:
                parts.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                             f'fill="{color_of[name]}"><title>{escape(f"{label} {name}: {values[i]}")}</title></rect>')
                base -= h
        if totals[i]:
            parts.append(_text(x + bar_w / 2, base - 3, str(totals[i]), size=10))
        parts.append(_text(x + bar_w / 2, top + plot_h + 14, label, size=10))
    legend_x = left
    for name, color in color_of.items() if legend else ():
        parts.append(f'<rect x="{legend_x}" y="{height - 22}" width="10" height="10" fill="{color}"/>')
        parts.append(_text(legend_x + 14, height - 13, name, "start", 11))
        legend_x += 24 + 7 * len(name)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()


def hbars(title: str, rows: list[tuple[str, float | None, str]], width: int = 640, color: str | None = None) -> Markup:
    """Horizontal bars of a 0..1 share per row (e.g. hit rate per team); `note` is written beside.
    Bars are green, amber or red by the share (a hit rate: higher is better), or all `color`."""
    label_w, row_h, top = 170, 26, 30
    height = top + row_h * max(len(rows), 1) + 10
    plot_w = width - label_w - 240
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(title)}" class="chart">', f"<title>{escape(title)}</title>",
             _text(8, 16, title, "start", 13, "chart-title")]
    if not rows:
        parts.append(_text(8, top + 16, "nothing measured yet", "start", 11))
    for i, (label, share, note) in enumerate(rows):
        y = top + i * row_h
        parts.append(_text(label_w - 8, y + 15, label[:26], "end", 11))
        parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{plot_w}" height="{row_h - 10}" fill="#eee"/>')
        if share is not None:
            fill = color or (GOOD if share >= 0.9 else WARN if share >= 0.7 else BAD)
            parts.append(f'<rect x="{label_w}" y="{y + 4}" width="{share * plot_w:.1f}" height="{row_h - 10}" '
                         f'fill="{fill}"/>')
        shown = f"{share:.0%}" if share is not None else "–"
        parts.append(_text(label_w + plot_w + 8, y + 15, f"{shown}  {note}", "start", 11))
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()
