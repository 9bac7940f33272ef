"""Pure helpers the pages use: record bytes shown as JSON, text or hex, framed values decoded with a schema
registry, and line charts as inline SVG.

A key or value in Confluent's framing (magic byte 0, a schema id; see :mod:`loosely.registry`) is shown decoded
as JSON with its schema id and subject when the console knows a registry (:func:`framed_views`, run in a worker
thread: the registry is asked over HTTP); a value that is not framed, or whose schema the registry cannot give,
is shown as its bytes, as without a registry.

No JavaScript chart library: a chart is a ``<svg>`` polyline computed here, so a page with a chart is plain HTML
that the browser's own script only refreshes (see ``static/console.js``).

>>> decode(b'{"id": 1}', "auto")
('json', '{\\n  "id": 1\\n}')
>>> decode(b"\\x00\\xff", "auto")
('hex', '00 ff')
>>> 'points="' in line_chart({"in": [(0.0, 1.0), (1.0, 3.0)]})
True
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Final, Protocol

from loosely.registry import FRAME_BYTES, DecodeError, FramedDecoder

__all__ = ["DECODINGS", "FramedView", "decode", "framed_views", "line_chart"]

DECODINGS: Final = ("auto", "json", "text", "hex")
_SHOWN_BYTES_MAX: Final = 64 * 1024  # a record's value shown on a page at most; the rest is cut, and said so
_COLOURS: Final = ("#2f6fdf", "#d9622b", "#2a9d5c", "#9b4dca", "#c0392b", "#7f8c8d")


def _hex(data: bytes) -> str:
    return data.hex(" ")


def decode(data: bytes | None, how: str) -> tuple[str, str]:
    """``(kind, text)``: ``how`` is ``auto`` (JSON, else UTF-8 text, else hex), ``json``, ``text`` or ``hex``.
    A value that cannot be shown the way asked is shown in hex, and ``kind`` says so."""
    if data is None:
        return "null", "null"
    cut = len(data) > _SHOWN_BYTES_MAX
    data = data[:_SHOWN_BYTES_MAX]
    suffix = f"\n... ({_SHOWN_BYTES_MAX} bytes shown)" if cut else ""
    if how == "hex":
        return "hex", _hex(data) + suffix
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "hex", _hex(data) + suffix
    if how in ("auto", "json") and not cut:
        try:
            return "json", json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        except ValueError:
            if how == "json":
                return "text", text
    if how == "auto" and any(ord(ch) < 32 and ch not in "\t\r\n" for ch in text):
        return "hex", _hex(data) + suffix
    return "text", text + suffix


@dataclass(frozen=True, slots=True)
class FramedView:
    """A framed key or value, decoded: ``kind`` (``avro``, ``json``, ``protobuf``), ``label`` (schema id and
    subjects) and ``text`` (indented JSON)."""

    kind: str
    label: str
    text: str


class _Record(Protocol):
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


def framed_views(decoder: FramedDecoder | None, records: Iterable[_Record]) -> dict[tuple[int, int, str], FramedView]:
    """``{(partition, offset, "key"|"value"): FramedView}`` for the framed fields of ``records`` that ``decoder``
    can decode (blocking: the registry is asked for schemas it has not cached)."""
    out: dict[tuple[int, int, str], FramedView] = {}
    if decoder is None:
        return out
    for r in records:
        for name, data in (("key", r.key), ("value", r.value)):
            if data is None or len(data) < FRAME_BYTES or data[0] != 0:
                continue
            try:
                found = decoder.decode(data)
            except DecodeError:
                continue  # not framed after all, or the registry cannot say: the bytes are shown
            try:
                subjects = ", ".join(f"{s} v{v}" for s, v in decoder.source.subjects(found.schema_id))
            except (DecodeError, ValueError, KeyError, TypeError):
                subjects = ""
            label = f"{found.schema_type} schema {found.schema_id}" + (f" ({subjects})" if subjects else "")
            text = json.dumps(json.loads(found.json), indent=2, ensure_ascii=False)
            out[(r.partition, r.offset, name)] = FramedView(found.schema_type.lower(), label, text)
    return out


def line_chart(series: Mapping[str, Sequence[tuple[float, float]]], *, width: int = 640, height: int = 180,
               unit: str = "") -> str:
    """An SVG line chart of ``{name: [(t_seconds, value), ...]}``, scaled to the data, with a legend."""
    pad_l, pad_r, pad_t, pad_b = 48, 8, 8, 22
    points = [pt for s in series.values() for pt in s]
    if not points:
        return (f'<svg class="chart" width="{width}" height="{height}" role="img"><text x="12" y="24">'
                "no samples yet</text></svg>")
    t0, t1 = min(t for t, _ in points), max(t for t, _ in points)
    top = max(1.0, *(v for _, v in points))
    span = max(t1 - t0, 1.0)
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def xy(t: float, v: float) -> str:
        return f"{pad_l + (t - t0) / span * w:.1f},{pad_t + h - v / top * h:.1f}"

    out = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
           f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{width - pad_r}" y2="{pad_t + h}" class="axis"/>',
           f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" class="axis"/>',
           f'<text x="{pad_l - 4}" y="{pad_t + 10}" text-anchor="end" class="tick">{top:g}</text>',
           f'<text x="{pad_l - 4}" y="{pad_t + h}" text-anchor="end" class="tick">0</text>',
           f'<text x="{width - pad_r}" y="{height - 6}" text-anchor="end" class="tick">last {span:.0f} s'
           f'{escape(" · " + unit) if unit else ""}</text>']
    for i, (name, s) in enumerate(series.items()):
        colour = _COLOURS[i % len(_COLOURS)]
        pts = " ".join(xy(t, v) for t, v in s)
        last = s[-1][1] if s else 0
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>')
        out.append(f'<text x="{pad_l + 6 + 170 * i}" y="{height - 6}" fill="{colour}" class="legend" '
                   f'data-series="{escape(name)}" data-last="{last:g}">{escape(name)}: {last:g}</text>')
    out.append("</svg>")
    return "".join(out)
