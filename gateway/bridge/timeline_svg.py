"""A call's timeline as one self-contained SVG: lanes over a time axis, each turn's response
time written on it.

Drawn from :meth:`~.timeline.Timeline.snapshot`, never from the live call. The marks themselves
travel inside the picture, as JSON in its ``<metadata>`` (:func:`marks` reads them back): one
file per call beside its record, and ``calls_dir/*.json`` stays the records alone. The picture
has no script, no style sheet, font or image from elsewhere; every string a caller, the model
or the service could choose (a tool's name) is XML-escaped and stripped of characters XML
cannot carry. Its size is bounded by the lanes' caps and a maximum width. Accessible:
``<title>`` and ``<desc>`` (a summary in words), each mark with its own ``<title>`` (a tooltip,
and what a screen reader reads). No ``id`` attributes: pictures of several calls inlined in one
page cannot clash.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape, quoteattr

LANES = (
    "caller_speech",
    "agent_audio",
    "service_vad",
    "barge_ins",
    "tools",
    "dtmf",
    "session",
    "loss",
)
LABELS = {
    "caller_speech": "Caller speech",
    "agent_audio": "Agent audio sent",
    "service_vad": "Service VAD",
    "barge_ins": "Barge-ins",
    "tools": "Tools",
    "dtmf": "DTMF",
    "session": "Reconnects",
    "loss": "Packet loss",
}
COLOURS = {
    "caller_speech": "#2e7d32",
    "agent_audio": "#1565c0",
    "service_vad": "#8e24aa",
    "barge_ins": "#c62828",
    "tools": "#ef6c00",
    "dtmf": "#00838f",
    "session": "#6d4c41",
    "loss": "#d81b60",
}
LEFT = 140  # px for the lane labels
TOP = 34  # px for the heading and the turns' labels
LANE_H = 30
PAD = 6  # px above and below a span in its lane
AXIS_H = 30
RIGHT = 60  # px: room for a response time written at the very end
PX_PER_S = 40.0
MIN_PLOT_W = 600
MAX_PLOT_W = 4000
TICK_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
FONT = 'font-family="sans-serif" font-size="11"'
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def text(value: object, limit: int = 80) -> str:
    """Any value as XML character data: cut to ``limit``, unrepresentable characters gone."""
    return escape(_NOT_XML.sub("", str(value))[:limit])


def attr(value: object) -> str:
    return quoteattr(_NOT_XML.sub("", str(value))[:200])


class _Scale:
    def __init__(self, duration_s: float) -> None:
        self.duration = max(duration_s, 1.0)
        self.width = min(max(self.duration * PX_PER_S, MIN_PLOT_W), MAX_PLOT_W)

    def x(self, t: float) -> float:
        return round(LEFT + max(0.0, min(t, self.duration)) / self.duration * self.width, 1)


def render(data: dict[str, Any]) -> str:
    """The picture of one call's timeline (``Timeline.snapshot``)."""
    scale = _Scale(float(data.get("duration_s", 0.0)))
    lanes = data.get("lanes", {})
    width = round(LEFT + scale.width + RIGHT)
    height = TOP + LANE_H * len(LANES) + AXIS_H
    call_id = data.get("call_id", "")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f"<title>Timeline of call {text(call_id)}</title>",
        f"<desc>{text(_summary(data), 2000)}</desc>",
        f'<metadata data-format="application/json">{_marks_text(data)}</metadata>',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="8" y="16" {FONT} font-weight="bold">Call {text(call_id)}: '
        f"{float(data.get('duration_s', 0.0)):.1f} s</text>",
    ]
    for index, name in enumerate(LANES):
        lane = lanes.get(name, {})
        parts.append(
            _lane(name, index, lane.get("entries", []), bool(lane.get("truncated")), scale)
        )
    parts.append(_turns(data.get("turns", []), scale))
    parts.append(_axis(scale, TOP + LANE_H * len(LANES)))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _marks_text(data: dict[str, Any]) -> str:
    # ensure_ascii: every character XML may carry, whatever a tool's name held.
    return escape(json.dumps(data, separators=(",", ":"), ensure_ascii=True))


def marks(svg: str) -> dict[str, Any]:
    """The marks a picture was drawn from (``Timeline.snapshot``), read from its metadata."""
    node = ET.fromstring(svg).find("{http://www.w3.org/2000/svg}metadata")
    if node is None or not node.text:
        raise ValueError("no timeline marks in this picture")
    return json.loads(node.text)


def _summary(data: dict[str, Any]) -> str:
    lanes = data.get("lanes", {})
    count = {name: len(lanes.get(name, {}).get("entries", [])) for name in LANES}
    response = [t["response_ms"] for t in data.get("turns", [])]
    words = (
        f"{float(data.get('duration_s', 0.0)):.1f} seconds; "
        f"{count['caller_speech']} stretches of caller speech, "
        f"{count['agent_audio']} of agent audio; {len(response)} turns"
    )
    if response:
        words += f", response times {', '.join(f'{ms} ms' for ms in response[:20])}"
        words += " and more" if len(response) > 20 else ""
    truncates = [e for e in lanes.get("barge_ins", {}).get("entries", []) if "heard_ms" in e]
    words += f"; {len(truncates)} barge-ins, {count['tools']} tool calls, {count['dtmf']} keys"
    words += f", {count['session']} session replacements, {count['loss']} seconds with loss."
    return words


def _lane(
    name: str, index: int, entries: list[dict[str, Any]], truncated: bool, scale: _Scale
) -> str:
    top = TOP + index * LANE_H
    colour = COLOURS[name]
    label = LABELS[name] + (" (cut short)" if truncated else "")
    out = [
        f'<g class="lane" data-lane="{name}">',
        f'<rect x="{LEFT}" y="{top}" width="{round(scale.width, 1)}" height="{LANE_H}" '
        f'fill="{"#f5f5f5" if index % 2 else "#fafafa"}"/>',
        f'<text x="8" y="{top + LANE_H // 2 + 4}" {FONT}>{text(label)}</text>',
    ]
    for entry in entries:
        if "start" in entry:
            out.append(_span(name, entry, top, colour, scale))
        elif "at" in entry:
            out.append(_mark(name, entry, top, colour, scale))
    out.append("</g>")
    return "\n".join(out)


def _span(name: str, entry: dict[str, Any], top: int, colour: str, scale: _Scale) -> str:
    start, end = float(entry["start"]), float(entry["end"])
    x0, x1 = scale.x(start), scale.x(end)
    tip = f"{start:.3f}-{end:.3f} s"
    label = ""
    if name == "tools":
        tip = f"{entry.get('name', '')}: {tip}" + (
            " (unfinished)" if entry.get("unfinished") else ""
        )
        label = (
            f'<text x="{x0 + 2}" y="{top + LANE_H - PAD - 4}" {FONT} fill="#ffffff">'
            f"{text(entry.get('name', ''), 24)}</text>"
        )
    return (
        f'<rect class="span" x="{x0}" y="{top + PAD}" width="{max(round(x1 - x0, 1), 1)}" '
        f'height="{LANE_H - 2 * PAD}" fill="{colour}" rx="2"><title>{text(tip)}</title></rect>'
        + label
    )


def _mark(name: str, entry: dict[str, Any], top: int, colour: str, scale: _Scale) -> str:
    at = float(entry["at"])
    x = scale.x(at)
    if name == "loss":
        lost = int(entry.get("lost", 0))
        h = max(2, min(LANE_H - 2 * PAD, round(lost / 50 * (LANE_H - 2 * PAD))))
        tip = f"{lost} packets lost by {at:.1f} s"
        return (
            f'<rect class="mark" x="{x - 2}" y="{top + LANE_H - PAD - h}" width="4" '
            f'height="{h}" fill="{colour}"><title>{text(tip)}</title></rect>'
        )
    if name == "barge_ins":
        kind = entry.get("kind", "")
        caption = f"{int(entry['heard_ms'])} ms" if "heard_ms" in entry else "hold"
        tip = (
            f"truncated at {caption} heard, {at:.3f} s"
            if kind == "truncate"
            else f"local hold at {at:.3f} s"
        )
    elif name == "dtmf":
        caption = str(entry.get("digit", ""))
        arrow = "from the caller" if entry.get("direction") == "in" else "to the caller"
        tip = f"key {caption} {arrow} at {at:.3f} s"
    else:
        caption = str(entry.get("kind", ""))
        tip = f"{caption} at {at:.3f} s"
    return (
        f'<g class="mark"><title>{text(tip)}</title>'
        f'<line x1="{x}" y1="{top + 3}" x2="{x}" y2="{top + LANE_H - 3}" stroke="{colour}" '
        f'stroke-width="2"/><text x="{x + 3}" y="{top + LANE_H // 2 + 4}" {FONT} '
        f'fill="{colour}">{text(caption, 16)}</text></g>'
    )


def _turns(turns: list[dict[str, Any]], scale: _Scale) -> str:
    """Each turn's response time, over the agent's lane: a bracket from the end of the
    caller's speech to the agent's first audio, with its ms."""
    agent_top = TOP + LANES.index("agent_audio") * LANE_H
    out = ['<g class="turns">']
    for turn in turns:
        x0, x1 = scale.x(float(turn["caller_end"])), scale.x(float(turn["agent_start"]))
        ms = int(turn["response_ms"])
        y = agent_top + 3
        out.append(
            f'<g class="turn"><title>response time {ms} ms</title>'
            f'<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="#000000" stroke-width="1"/>'
            f'<text class="response" x="{x1 + 2}" y="{agent_top - 2 if agent_top > TOP else y}" '
            f"{FONT}>{ms} ms</text></g>"
        )
    out.append("</g>")
    return "\n".join(out)


def _axis(scale: _Scale, y: int) -> str:
    step = next((s for s in TICK_STEPS if scale.duration / s <= scale.width / 70), TICK_STEPS[-1])
    out = [
        '<g class="axis">',
        f'<line x1="{LEFT}" y1="{y}" x2="{round(LEFT + scale.width, 1)}" y2="{y}" '
        'stroke="#000000"/>',
    ]
    for k in range(math.floor(scale.duration / step) + 1):
        t = k * step
        x = scale.x(t)
        out.append(
            f'<line x1="{x}" y1="{y}" x2="{x}" y2="{y + 4}" stroke="#000000"/>'
            f'<text class="tick" x="{x}" y="{y + 16}" {FONT} text-anchor="middle">{t} s</text>'
        )
    out.append("</g>")
    return "\n".join(out)
