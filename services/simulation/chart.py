"""The balances of a simulation as an SVG line chart: one line per account and credit type,
days along the bottom. Plain SVG text: no plotting library, opens in any browser."""

from __future__ import annotations

from html import escape

from services.simulation.run import SimulationResult

WIDTH_PX = 900
HEIGHT_PX = 420
MARGIN_PX = 60
LEGEND_PX = 220
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
# A chart of more lines than this reads as noise: the first ones are drawn, the rest are named.
MAX_LINES = len(COLOURS)


def series(result: SimulationResult) -> dict[str, list[int]]:
    """`account · credit type` → available at the end of each day (lines always at 0 left out)."""
    lines: dict[str, list[int]] = {}
    for day in result.days:
        for account, balances in day.available.items():
            for credit_type, available in balances.items():
                lines.setdefault(f"{account} · {credit_type}", []).append(available)
    return {name: values for name, values in lines.items() if any(values)}


def svg_chart(result: SimulationResult, title: str) -> str:
    lines = series(result)
    shown = dict(list(lines.items())[:MAX_LINES])
    days = max(len(result.days), 2)
    top = max([max(values) for values in shown.values()] + [1])
    bottom = min([min(values) for values in shown.values()] + [0])
    plot_w = WIDTH_PX - 2 * MARGIN_PX - LEGEND_PX
    plot_h = HEIGHT_PX - 2 * MARGIN_PX

    def x(day: int) -> float:
        return MARGIN_PX + plot_w * day / (days - 1)

    def y(value: int) -> float:
        return MARGIN_PX + plot_h * (top - value) / max(top - bottom, 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{HEIGHT_PX}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH_PX}" height="{HEIGHT_PX}" fill="white"/>',
        f'<text x="{MARGIN_PX}" y="{MARGIN_PX / 2}" font-size="15">{escape(title)}</text>',
        f'<line x1="{MARGIN_PX}" y1="{y(bottom)}" x2="{MARGIN_PX + plot_w}" y2="{y(bottom)}" '
        'stroke="#444"/>',
        f'<line x1="{MARGIN_PX}" y1="{MARGIN_PX}" x2="{MARGIN_PX}" y2="{y(bottom)}" '
        'stroke="#444"/>',
    ]
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        value = round(bottom + (top - bottom) * fraction)
        parts.append(
            f'<text x="{MARGIN_PX - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:,}</text>'
        )
    tick_every = max(1, (days - 1) // 8)
    for day in range(0, len(result.days), tick_every):
        label = result.days[day].date[5:]
        parts.append(
            f'<text x="{x(day):.1f}" y="{y(bottom) + 18:.1f}" text-anchor="middle">{label}</text>'
        )
    for index, (name, values) in enumerate(shown.items()):
        colour = COLOURS[index]
        points = " ".join(f"{x(day):.1f},{y(value):.1f}" for day, value in enumerate(values))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
        )
        legend_y = MARGIN_PX + 18 * index
        legend_x = WIDTH_PX - LEGEND_PX
        parts.append(
            f'<rect x="{legend_x}" y="{legend_y - 9}" width="12" height="12" fill="{colour}"/>'
        )
        parts.append(f'<text x="{legend_x + 18}" y="{legend_y + 2}">{escape(name)}</text>')
    hidden = len(lines) - len(shown)
    if hidden:
        parts.append(
            f'<text x="{WIDTH_PX - LEGEND_PX}" y="{MARGIN_PX + 18 * len(shown) + 4}">'
            f"and {hidden} more lines</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def table(result: SimulationResult) -> str:
    """One line per day: the date, then `account · type=available` and the day's use."""
    out = []
    for day in result.days:
        cells = []
        for account, balances in day.available.items():
            figures = " ".join(f"{t}={v:,}" for t, v in balances.items() if v)
            use = day.used.get(account, 0)
            refused = day.refused.get(account, 0)
            note = f" used {use:,}" + (f", {refused} refused" if refused else "")
            cells.append(f"{account}: {figures or '0'}{note}")
        out.append(f"day {day.day:>3} {day.date}  " + " | ".join(cells))
    return "\n".join(out)
