"""Live migration in the `reference` profile: a source ReferenceVm migrates to a
target ReferenceVm of the same process, both driven by the reference model.

The simulation is synchronous, with one deliberate exception:
- `migrate` drives the source model through setup, UNPLUG_PRIMARY and
  wait-unplug; the simulated guest releases every primary the host asked for
  (see SimulatedGuest.release_requested), which lets the model go active.
- The state transfer does not finish inside `migrate`, so that a case can still
  `migrate_cancel` an active migration. It finishes when time would have to
  pass: the first wait (QMP or guest agent, on the source or on the target)
  for something not there yet. Then the source logs transfer-done (STOP,
  MIGRATION device, completed), the target's guest takes over the source
  guest's state (memory migrates: loaded modules, acked standbys, netdevs), the
  target logs incoming-loaded with the standbys whose guest acked
  VIRTIO_NET_F_STANDBY, and its model replays the negotiation (plugs the
  primary, RESUME, completed).
- A cancel that ends the migration (cancelled) also ends the target's incoming
  migration as failed, as the stream closes under it (QEMU's target then
  reports MIGRATION failed): the target logs migration-failed."""

from __future__ import annotations

from typing import Any, Dict, Optional

from vnetct.core.native import HostError, vnetct_native

# Targets listening for a migration, by URI: what a source's `migrate` connects to.
TARGETS: Dict[str, Any] = {}

ENDED = ("cancelled", "failed", "completed")


def migration_uri(name: str) -> str:
    return f"unix:/reference/{name}.sock"


class ReferenceMigration:
    """Mixed into ReferenceVm (which provides model, model_input, record, agent)."""

    def init_migration(self, incoming: bool) -> None:
        self.incoming = incoming
        self.migration_uri = migration_uri(self.name)
        # Source: its target once `migrate` connected; target: its source.
        self.migration_peer: Optional["ReferenceMigration"] = None
        self._target_failed = False

    # -- target -------------------------------------------------------------------
    def listen(self) -> None:
        """The target waits for the source's state (QEMU: -incoming)."""
        self.record("incoming")
        self.model_input("incoming")
        TARGETS[self.migration_uri] = self

    def unlisten(self) -> None:
        if TARGETS.get(self.migration_uri) is self:
            del TARGETS[self.migration_uri]

    # -- QMP commands --------------------------------------------------------------
    def migration_command(self, command: str, arguments: Optional[dict]) -> Any:
        """The reply to a migration QMP command, or NotImplemented for others."""
        if command in ("migrate-set-capabilities", "migrate-set-parameters"):
            return {}
        if command == "query-migrate":
            state = self.model.migration_state
            return {} if state == "none" else {"status": state}
        if command == "migrate":
            self._migrate((arguments or {}).get("uri", ""))
            return {}
        if command == "migrate_cancel":
            self._model_command(command, "migrate_cancel")
            self._fail_target_if_ended()
            return {}
        return NotImplemented

    def _model_command(self, command: str, method: str) -> None:
        try:
            self.model_input(method)
        except vnetct_native.ModelError as error:
            raise HostError(f"the command returned an error: {command}: refused by the reference model: {error}") from error

    def _migrate(self, uri: str) -> None:
        if self.incoming:
            raise HostError("the command returned an error: migrate: refused by the reference model: this VM is a "
                            "migration target")
        target = TARGETS.get(uri)
        if target is None or target.model.migration_state != "active" or target.migration_peer is not None:
            raise HostError(f"the command returned an error: migrate: no reference target listens on {uri}")
        self._model_command("migrate", "migrate")
        self.migration_peer = target
        target.migration_peer = self

    def _fail_target_if_ended(self) -> None:
        target = self.migration_peer
        if (target is None or self._target_failed or self.model.migration_state not in ("cancelled", "failed")
                or target.model.migration_state in ENDED):
            return
        self._target_failed = True
        if not any(entry["kind"] == "migration-failed" for entry in target.trace_log):
            target.record("migration-failed")  # unless the case logged it (as it must on a real QEMU)
        target.model_input("migration_failed")

    # -- the transfer ----------------------------------------------------------------
    def finish_transfer(self) -> bool:
        """Time passes: a pending transfer (source active, target waiting) ends.
        Returns whether anything happened."""
        source = self.migration_peer if self.incoming else self
        if source is None or source.incoming:
            return False
        target = source.migration_peer
        if target is None or source.model.migration_state != "active" or target.model.migration_state != "active":
            return False
        source.record("transfer-done")
        source.model_input("transfer_done")
        if source.model.migration_state != "completed":
            return True
        target.agent.adopt(source.agent)
        standbys = [standby for standby, acked in source.agent.acked.items() if acked]
        target.record("incoming-loaded", standbys=standbys)
        target.model_input("incoming_loaded", standbys)
        return True
