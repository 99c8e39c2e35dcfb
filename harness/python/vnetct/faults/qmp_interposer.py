"""A QMP interposer: between the harness's QMP client and QEMU's monitor
socket, it forwards every line unchanged except where a fault plan says to
drop an event, forge events after a trigger, or edit a command's reply.

The plan (JSON-like): {"rules": [rule, ...]}, each rule with
  name            for the log
  event / data    trigger: an event from QEMU (data: a subset its data holds)
  command / arguments   trigger: a command from the client (arguments subset)
  on_connect      trigger: once, after QEMU answered the client's qmp_capabilities
  action          drop | forge | edit-reply
  forge           [{"event": NAME, "data": {...}}] sent to the client after the trigger
  drop_trigger    forge: the triggering event is not forwarded
  set / remove    edit-reply: keys merged into the returned object; array
                  elements (any depth) that hold the subset removed
  count           act on the first N matches only
  armed_by / disarmed_by   {"event": NAME, "data": {...}}: act only after / no
                  more after such an event came from QEMU
QEMU's lines are untrusted: a line over MAX_LINE bytes closes the connection."""

from __future__ import annotations

import json
import os
import selectors
import socket
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

MAX_LINE = 1 << 20
ACTIONS = ("drop", "forge", "edit-reply")
RULE_KEYS = {"name", "event", "data", "command", "arguments", "on_connect", "action", "forge", "drop_trigger",
             "set", "remove", "count", "armed_by", "disarmed_by"}


class PlanError(ValueError):
    """A fault plan that cannot be run: names the rule and the field."""


def holds(value: Any, subset: Any) -> bool:
    """Whether `value` holds every key/value of `subset`, recursively."""
    if isinstance(subset, dict):
        return isinstance(value, dict) and all(k in value and holds(value[k], v) for k, v in subset.items())
    return value == subset


def _remove(value: Any, subset: dict) -> Any:
    if isinstance(value, list):
        return [_remove(item, subset) for item in value if not (isinstance(item, dict) and holds(item, subset))]
    if isinstance(value, dict):
        return {key: _remove(item, subset) for key, item in value.items()}
    return value


def validate(plan: dict) -> List[dict]:
    if not isinstance(plan, dict) or not isinstance(plan.get("rules"), list):
        raise PlanError("the plan must be an object with a list 'rules'")
    for index, rule in enumerate(plan["rules"]):
        where = f"rule {index} ({rule.get('name', '?') if isinstance(rule, dict) else '?'})"
        if not isinstance(rule, dict):
            raise PlanError(f"{where}: expected an object")
        unknown = set(rule) - RULE_KEYS
        if unknown:
            raise PlanError(f"{where}: unknown field(s) {sorted(unknown)}")
        if not isinstance(rule.get("name"), str):
            raise PlanError(f"{where}: field 'name': expected a string")
        triggers = [key for key in ("event", "command", "on_connect") if key in rule]
        if len(triggers) != 1:
            raise PlanError(f"{where}: expected exactly one trigger of event, command, on_connect; got {triggers}")
        if rule.get("action") not in ACTIONS:
            raise PlanError(f"{where}: field 'action': expected one of {ACTIONS}, got {rule.get('action')!r}")
        if rule["action"] == "edit-reply" and "command" not in rule:
            raise PlanError(f"{where}: edit-reply needs a command trigger")
        if rule["action"] == "drop" and "event" not in rule:
            raise PlanError(f"{where}: drop needs an event trigger")
        if rule["action"] == "forge" and not isinstance(rule.get("forge"), list):
            raise PlanError(f"{where}: field 'forge': expected a list of events")
    return plan["rules"]


class QmpInterposer:
    """Serves `listen_path`; for each client, connects to `upstream_path`
    (retrying while QEMU has not created it) and relays under the plan. The
    actions it took are in `actions` (and, one JSON line each, in log_path)."""

    def __init__(self, listen_path: str, upstream_path: str, plan: dict, log_path: str = ""):
        self.rules = validate(plan)
        self.upstream_path = upstream_path
        self.log_path = log_path
        self.actions: List[dict] = []
        self._lock = threading.Lock()
        self._used = [0] * len(self.rules)
        self._armed = [("armed_by" not in rule) for rule in self.rules]
        self._disarmed = [False] * len(self.rules)
        Path(listen_path).unlink(missing_ok=True)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(listen_path)
        self._server.listen(1)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, name="qmp-interposer", daemon=True)
        self._thread.start()

    # -- the plan ------------------------------------------------------------
    def _log(self, rule: dict, action: str, message: Any) -> None:
        record = {"host_ns": time.monotonic_ns(), "rule": rule["name"], "action": action, "message": message}
        with self._lock:
            self.actions.append(record)
        if self.log_path:
            with open(self.log_path, "a") as log:
                log.write(json.dumps(record) + "\n")

    def _active(self, index: int) -> bool:
        rule = self.rules[index]
        return (self._armed[index] and not self._disarmed[index] and
                ("count" not in rule or self._used[index] < rule["count"]))

    def _see_event(self, event: dict) -> None:
        for index, rule in enumerate(self.rules):
            for key, flags in (("armed_by", self._armed), ("disarmed_by", self._disarmed)):
                trigger = rule.get(key)
                if trigger and event.get("event") == trigger.get("event") and \
                        holds(event.get("data", {}), trigger.get("data", {})):
                    flags[index] = True

    @staticmethod
    def _forged(events: List[dict]) -> List[bytes]:
        now = time.time()
        stamp = {"seconds": int(now), "microseconds": int((now % 1) * 1e6)}
        return [(json.dumps({"event": e["event"], "data": e.get("data", {}), "timestamp": stamp}) + "\r\n").encode()
                for e in events]

    def _from_qemu(self, line: bytes, pending: Dict[Any, int]) -> List[bytes]:
        try:
            message = json.loads(line)
        except ValueError:
            return [line]
        if not isinstance(message, dict):
            return [line]
        if "event" in message:
            out, dropped = [line], False
            for index, rule in enumerate(self.rules):
                if rule.get("event") != message["event"] or not holds(message.get("data", {}), rule.get("data", {})):
                    continue
                if not self._active(index):
                    continue
                self._used[index] += 1
                if rule["action"] == "drop" or rule.get("drop_trigger"):
                    dropped = True
                    self._log(rule, "dropped", message)
                if rule["action"] == "forge":
                    forged = self._forged(rule["forge"])
                    out += forged
                    self._log(rule, "forged", rule["forge"])
            self._see_event(message)
            return out[1:] if dropped else out
        index = pending.pop(message.get("id"), None) if "id" in message else None
        if index is not None and index >= 0 and "return" in message:
            rule = self.rules[index]
            value = message["return"]
            if "remove" in rule:
                value = _remove(value, rule["remove"])
            if "set" in rule and isinstance(value, dict):
                value = {**value, **rule["set"]}
            message["return"] = value
            self._log(rule, "edited-reply", message)
            return [(json.dumps(message) + "\r\n").encode()]
        if index == -1:  # the reply to qmp_capabilities: on_connect rules fire now
            out = [line]
            for number, rule in enumerate(self.rules):
                if rule.get("on_connect") and self._active(number):
                    self._used[number] += 1
                    out += self._forged(rule["forge"])
                    self._log(rule, "forged", rule["forge"])
            return out
        return [line]

    def _from_client(self, line: bytes, pending: Dict[Any, int]) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict) or "execute" not in message:
            return
        if message["execute"] == "qmp_capabilities":
            pending[message.get("id")] = -1
            return
        for index, rule in enumerate(self.rules):
            if rule.get("command") == message["execute"] and \
                    holds(message.get("arguments", {}), rule.get("arguments", {})) and self._active(index):
                self._used[index] += 1
                pending[message.get("id")] = index
                return

    # -- the relay -----------------------------------------------------------
    def _connect_upstream(self, deadline: float) -> Optional[socket.socket]:
        while time.monotonic() < deadline:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.upstream_path)
                return upstream
            except OSError:
                upstream.close()
                if self._stopping(0.05):
                    return None
        return None

    def _stopping(self, timeout: float) -> bool:
        ready = selectors.DefaultSelector()
        ready.register(self._stop_r, selectors.EVENT_READ)
        try:
            return bool(ready.select(timeout))
        finally:
            ready.close()

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._server, selectors.EVENT_READ, "accept")
        selector.register(self._stop_r, selectors.EVENT_READ, "stop")
        while True:
            for key, _ in selector.select():
                if key.data == "stop":
                    selector.close()
                    return
                client, _ = self._server.accept()
                upstream = self._connect_upstream(time.monotonic() + 30.0)
                if upstream is None:
                    client.close()
                    continue
                if not self._relay(client, upstream):
                    selector.close()
                    return

    def _relay(self, client: socket.socket, upstream: socket.socket) -> bool:
        """Relays until either side hangs up (True) or stop() (False)."""
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, "client")
        selector.register(upstream, selectors.EVENT_READ, "qemu")
        selector.register(self._stop_r, selectors.EVENT_READ, "stop")
        buffers = {"client": b"", "qemu": b""}
        pending: Dict[Any, int] = {}
        try:
            while True:
                for key, _ in selector.select():
                    if key.data == "stop":
                        return False
                    data = key.fileobj.recv(65536)
                    if not data:
                        return True
                    buffers[key.data] += data
                    if len(buffers[key.data]) > MAX_LINE and b"\n" not in buffers[key.data]:
                        self._log({"name": "interposer"}, "closed", f"{key.data} sent a line over {MAX_LINE} bytes")
                        return True
                    *lines, buffers[key.data] = buffers[key.data].split(b"\n")
                    for raw in lines:
                        line = raw + b"\n"
                        if key.data == "client":
                            self._from_client(line, pending)
                            upstream.sendall(line)
                        else:
                            for out in self._from_qemu(line, pending):
                                client.sendall(out)
        except OSError:
            return True
        finally:
            selector.close()
            client.close()
            upstream.close()

    def stop(self) -> None:
        if self._thread.is_alive():
            os.write(self._stop_w, b"x")
            self._thread.join(timeout=10.0)
        self._server.close()
