"""Bar charts as inline SVG, drawn on the server: no script, readable without colour alone
(every bar carries its number), with a text alternative for screen readers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup


def bars(
    data: Sequence[tuple[datetime, int]], *, title: str, label_id: str, colour: str = "#1f4e8c"
) -> Markup:
    width, height, pad, top = 640, 220, 28, 18
    peak = max((v for _, v in data), default=0) or 1
    slot = (width - 2 * pad) / max(len(data), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{label_id}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{label_id}">{escape(title)}</title>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#333" stroke-width="1"/>',
    ]
    for i, (month, value) in enumerate(data):
        h = (height - pad - top - 14) * value / peak
        x = pad + i * slot + slot * 0.15
        y = height - pad - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{colour}"><title>{month:%Y-%m}: {value}</title></rect>'
        )
        parts.append(
            f'<text x="{x + slot * 0.35:.1f}" y="{y - 4:.1f}" text-anchor="middle" '
            f'font-size="12" fill="#111">{value}</text>'
        )
        parts.append(
            f'<text x="{x + slot * 0.35:.1f}" y="{height - pad + 16:.1f}" text-anchor="middle" '
            f'font-size="11" fill="#111">{month:%m/%y}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers and escaped text only
