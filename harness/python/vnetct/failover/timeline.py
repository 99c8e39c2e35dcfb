"""A migration case's timeline for the report: what the source's and the
target's QMP, and the guest on each side, said, on one time axis (ms from the
migrate command), with the traffic phases and loss windows; and the traffic
stream as a series (sent time, RTT or lost). Written into results.json by
case.timeline() / case.series() (schema: reports/RESULTS.md)."""

from __future__ import annotations

from typing import List, Optional

# Agent events worth a mark on the guest track; data fields that label them.
_GUEST_EVENTS = ("netdev-added", "netdev-removed", "netdev-changed")


def _ms(t_ns: int, origin_ns: int) -> float:
    return round((t_ns - origin_ns) / 1e6, 3)


def _qmp_label(event: dict) -> str:
    data = event.get("data") or {}
    detail = data.get("status") or data.get("device-id") or data.get("device") or ""
    return f"{event['name']} {detail}".strip()


def _guest_label(event: dict) -> str:
    data = event.get("data") or {}
    changes = ",".join(data.get("changes") or [])
    role = f" ({data['master']} slave)" if data.get("master") else ""
    return f"{event['name']} {data.get('name', '')}{role}{' ' + changes if changes else ''}".strip()


def _track(name: str, events: List[dict], origin_ns: int, label, keep=lambda e: True) -> dict:
    return {"name": name, "events": [{"t_ms": _ms(e["host_ns"], origin_ns), "label": label(e)}
                                     for e in events if keep(e)]}


def migration_timeline(origin_ns: int, source, target, qmp_mark: int = 0, agent_mark: int = 0,
                       traffic: Optional[dict] = None) -> dict:
    """`traffic`: the analysis of a vnetct.traffic.echo stream (phases with start/end
    and loss windows), or None."""
    guest_event = lambda e: e["name"] in _GUEST_EVENTS  # noqa: E731
    tracks = [_track("source QMP", source.qmp.events[qmp_mark:], origin_ns, _qmp_label)]
    if target is not None and target.qmp is not None:
        tracks.append(_track("target QMP", target.qmp.events, origin_ns, _qmp_label))
    if source.agent is not None:
        tracks.append(_track("guest on source", source.agent.events[agent_mark:], origin_ns, _guest_label,
                             guest_event))
    if target is not None and target.agent is not None and target.agent is not source.agent:
        tracks.append(_track("guest on target", target.agent.events, origin_ns, _guest_label, guest_event))
    timeline = {"origin": "migrate command", "tracks": tracks, "phases": [], "windows": []}
    if traffic is not None:
        for phase in traffic["phases"]:
            timeline["phases"].append({"name": phase["name"], "start_ms": _ms(phase["start_ns"], origin_ns),
                                       "end_ms": _ms(phase["end_ns"], origin_ns)})
            for window in phase["loss_windows"]:
                timeline["windows"].append({
                    "track": "traffic", "start_ms": _ms(window["start_ns"], origin_ns),
                    "end_ms": _ms(window["end_ns"], origin_ns),
                    "label": f"{window['count']} lost (seq {window['first_seq']}-{window['last_seq']})"})
    return timeline


def traffic_series(sent_ns: List[int], arrivals: List[tuple], origin_ns: int) -> dict:
    """Per datagram: sent time (ms from the origin) and RTT of its first echo
    in ms, None when it never came back."""
    first = {}
    for seq, arrival in arrivals:
        first.setdefault(seq, arrival)
    return {"sent_ms": [_ms(t, origin_ns) for t in sent_ns],
            "rtt_ms": [round((first[seq] - t) / 1e6, 3) if seq in first else None
                       for seq, t in enumerate(sent_ns)]}
