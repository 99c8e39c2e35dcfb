"""Geometry of the report's pictures: a case's migration timeline and its
traffic charts, as numbers (coordinates, path data, tick labels) that the
Jinja templates turn into SVG. Nothing here writes markup."""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

WIDTH = 1000.0  # SVG user units; the SVG scales to the page width
GUTTER = 130.0  # left margin for the track names
RIGHT = 20.0
LABEL_CHARS = 26  # a mark's label is cut to this; its <title> has it all
CHAR_WIDTH = 6.2  # at font-size 10 (DejaVu Sans averages about 6)
LABEL_ROW = 12.0
AXIS_HEIGHT = 22.0
PHASE_BAND = 16.0


def nice_step(span: float, target_ticks: int = 8) -> float:
    """A 1/2/5 x 10^n step giving about `target_ticks` ticks over `span`."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / target_ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power


def format_ms(value: float) -> str:
    if abs(value) >= 1000 and value == round(value / 100) * 100:
        return f"{value / 1000:g} s"
    return f"{value:g} ms" if value == round(value, 3) else f"{value:.3f} ms"


class Scale:
    """Linear map from ms to x in [GUTTER, WIDTH - RIGHT]."""

    def __init__(self, low: float, high: float):
        if high <= low:
            low, high = low - 1.0, high + 1.0
        pad = (high - low) * 0.02
        self.low, self.high = low - pad, high + pad

    def x(self, t_ms: float) -> float:
        span = WIDTH - RIGHT - GUTTER
        return round(GUTTER + (t_ms - self.low) / (self.high - self.low) * span, 1)

    def ticks(self) -> List[dict]:
        step = nice_step(self.high - self.low)
        first = math.ceil(self.low / step) * step
        count = int((self.high - first) / step) + 1
        return [{"x": self.x(first + i * step), "label": format_ms(round(first + i * step, 6))}
                for i in range(max(count, 0))]


def _times(timeline: dict) -> List[float]:
    times = [event["t_ms"] for track in timeline.get("tracks", []) for event in track.get("events", [])]
    for item in [*timeline.get("phases", []), *timeline.get("windows", [])]:
        times += [item["start_ms"], item["end_ms"]]
    return [t for t in times if isinstance(t, (int, float)) and math.isfinite(t)]


def _place_labels(marks: List[dict]) -> int:
    """Greedy: each mark's label goes to the first row where it does not run
    into the previous label; near the right edge it ends at the mark instead
    of starting there. Returns the number of rows used."""
    row_ends: List[float] = []
    for mark in sorted(marks, key=lambda m: m["x"]):
        width = len(mark["short"]) * CHAR_WIDTH + 6
        mark["anchor_end"] = mark["x"] + width > WIDTH
        start, end = (mark["x"] - width, mark["x"]) if mark["anchor_end"] else (mark["x"], mark["x"] + width)
        for row, row_end in enumerate(row_ends):
            if start >= row_end:
                row_ends[row] = end
                mark["row"] = row
                break
        else:
            mark["row"] = len(row_ends)
            row_ends.append(end)
    return max(len(row_ends), 1)


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…"


def timeline_view(timeline: Optional[dict]) -> Optional[dict]:
    """Rows (tracks, then traffic loss windows), phase bands and an axis."""
    if not timeline:
        return None
    times = _times(timeline)
    if not times:
        return None
    scale = Scale(min(times), max(times))
    rows = []
    y = PHASE_BAND + 4
    for track in timeline.get("tracks", []):
        marks = [{"x": scale.x(e["t_ms"]), "t_ms": e["t_ms"], "label": str(e.get("label", "")),
                  "short": _short(str(e.get("label", "")))} for e in track.get("events", [])]
        label_rows = _place_labels(marks)
        height = 16 + label_rows * LABEL_ROW
        for mark in marks:
            mark["label_y"] = round(y + 22 + mark["row"] * LABEL_ROW, 1)
        rows.append({"name": track.get("name", ""), "y": y, "height": height, "marks": marks, "windows": []})
        y += height
    windows_by_track: Dict[str, List[dict]] = {}
    for window in timeline.get("windows", []):
        windows_by_track.setdefault(window.get("track", "traffic"), []).append(window)
    for name, windows in windows_by_track.items():
        bars = []
        for window in windows:
            x0, x1 = scale.x(window["start_ms"]), scale.x(window["end_ms"])
            bars.append({"x": x0, "width": max(round(x1 - x0, 1), 1.5), "label": str(window.get("label", "")),
                         "short": _short(str(window.get("label", ""))), "start_ms": window["start_ms"],
                         "end_ms": window["end_ms"]})
        label_rows = _place_labels(bars)
        height = 22 + label_rows * LABEL_ROW
        for bar in bars:
            bar["label_y"] = round(y + 28 + bar["row"] * LABEL_ROW, 1)
        rows.append({"name": f"{name} loss", "y": y, "height": height, "marks": [], "windows": bars})
        y += height
    phases = []
    for index, phase in enumerate(timeline.get("phases", [])):
        x0, x1 = scale.x(phase["start_ms"]), scale.x(phase["end_ms"])
        phases.append({"name": phase.get("name", ""), "x": x0, "width": max(round(x1 - x0, 1), 0.5),
                       "start_ms": phase["start_ms"], "end_ms": phase["end_ms"], "shade": index % 2})
    return {"width": WIDTH, "gutter": GUTTER, "height": round(y + AXIS_HEIGHT, 1), "axis_y": round(y, 1),
            "rows": rows, "phases": phases, "ticks": scale.ticks(),
            "origin_x": scale.x(0.0) if scale.low <= 0.0 <= scale.high else None,
            "origin": timeline.get("origin", "origin")}


# --- traffic series ---------------------------------------------------------------

RTT_TOP = 8.0
RTT_HEIGHT = 150.0
LOSS_HEIGHT = 60.0
LOSS_GAP = 18.0
BIN_MS = 50.0


def _log_scale(values: Sequence[float]) -> Tuple[float, float]:
    low = min(values)
    high = max(values)
    low_exp = math.floor(math.log10(max(low, 0.01)))
    high_exp = math.ceil(math.log10(max(high, 0.01)))
    if high_exp <= low_exp:
        high_exp = low_exp + 1
    return float(low_exp), float(high_exp)


def series_view(series: Optional[dict], timeline: Optional[dict] = None) -> Optional[dict]:
    """The RTT of every echoed datagram over its send time (log scale), and
    the lost datagrams per 50 ms bin below it, with the traffic phases."""
    traffic = (series or {}).get("traffic")
    if not traffic:
        return None
    sent = traffic.get("sent_ms") or []
    rtts = traffic.get("rtt_ms") or []
    pairs = [(s, r) for s, r in zip(sent, rtts) if isinstance(s, (int, float))]
    if not pairs:
        return None
    scale = Scale(min(s for s, _ in pairs), max(s for s, _ in pairs))
    echoed = [r for _, r in pairs if isinstance(r, (int, float)) and r > 0]
    lost = [s for s, r in pairs if r is None]
    view = {"width": WIDTH, "gutter": GUTTER, "ticks": scale.ticks(), "count": len(pairs),
            "lost": len(lost), "rtt_path": "", "rtt_ticks": [], "bins": [], "phases": []}
    rtt_bottom = RTT_TOP + RTT_HEIGHT
    if echoed:
        low_exp, high_exp = _log_scale(echoed)

        def y_of(rtt: float) -> float:
            exponent = math.log10(max(rtt, 10 ** low_exp))
            return round(rtt_bottom - (exponent - low_exp) / (high_exp - low_exp) * RTT_HEIGHT, 1)

        commands, pen_down = [], False
        for s, r in pairs:
            if isinstance(r, (int, float)) and r > 0:
                commands.append(f"{'L' if pen_down else 'M'}{scale.x(s)} {y_of(r)}")
                pen_down = True
            else:
                pen_down = False  # a gap where datagrams were lost
        view["rtt_path"] = " ".join(commands)
        view["rtt_ticks"] = [{"y": y_of(10 ** e), "label": format_ms(10 ** e)}
                             for e in range(int(low_exp), int(high_exp) + 1)]
        ordered = sorted(echoed)
        view["rtt_median"] = ordered[len(ordered) // 2]
        view["rtt_max"] = ordered[-1]
    loss_top = rtt_bottom + LOSS_GAP
    bins: Dict[int, int] = {}
    for s in lost:
        bins[int(math.floor(s / BIN_MS))] = bins.get(int(math.floor(s / BIN_MS)), 0) + 1
    per_bin_max = max(bins.values()) if bins else 0
    for index, count in sorted(bins.items()):
        x0, x1 = scale.x(index * BIN_MS), scale.x((index + 1) * BIN_MS)
        height = round(count / per_bin_max * LOSS_HEIGHT, 1)
        view["bins"].append({"x": x0, "width": max(round(x1 - x0, 1), 1.0), "y": round(loss_top + LOSS_HEIGHT - height, 1),
                             "height": height, "count": count, "start_ms": index * BIN_MS})
    view.update({"rtt_top": RTT_TOP, "rtt_bottom": rtt_bottom, "loss_top": loss_top,
                 "loss_bottom": loss_top + LOSS_HEIGHT, "bin_ms": BIN_MS, "bin_max": per_bin_max,
                 "height": loss_top + LOSS_HEIGHT + AXIS_HEIGHT})
    for index, phase in enumerate((timeline or {}).get("phases", [])):
        x0, x1 = scale.x(max(phase["start_ms"], scale.low)), scale.x(min(phase["end_ms"], scale.high))
        if x1 > x0:
            view["phases"].append({"name": phase.get("name", ""), "x": x0, "width": round(x1 - x0, 1),
                                   "shade": index % 2})
    return view


def bars_view(values: List[Optional[float]], width: float = 160.0, height: float = 14.0) -> dict:
    """Horizontal bars, one per run, for the comparison table."""
    numbers = [v for v in values if isinstance(v, (int, float))]
    top = max(numbers) if numbers else 0.0
    bars = []
    for index, value in enumerate(values):
        length = 0.0 if not isinstance(value, (int, float)) or top <= 0 else round(value / top * width, 1)
        bars.append({"y": index * (height + 2), "width": max(length, 0.0), "value": value})
    return {"width": width, "bar_height": height, "height": len(values) * (height + 2), "bars": bars}
