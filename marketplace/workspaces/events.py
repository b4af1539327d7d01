"""Lifecycle signals of installations, for the engine and the runtime.

The service layer announces what changed; whoever runs gears listens and acts
(start or stop a worker, call ``gear_install``/``gear_uninstall``). This keeps
the dependency one-way: the runtime may import this module, this package never
imports the runtime.

Every signal is sent **after** the change is committed, with an
:class:`InstallationEvent` as the sender::

    from marketplace.workspaces import events

    @events.on_installed.connect
    def start(event: events.InstallationEvent) -> None: ...

Signals are notifications: a failing receiver is logged and skipped, so it can
neither undo a committed change nor keep the other receivers from hearing it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from blinker import Namespace, Signal

log = logging.getLogger(__name__)

signals = Namespace()

#: A gear was installed into a workspace (run ``gear_install``, start its worker).
on_installed: Signal = signals.signal("installation-installed")
#: An installation moved to another version (``previous_version`` says from which).
on_upgraded: Signal = signals.signal("installation-upgraded")
#: An installation was removed; the event carries its last config and secrets,
#: because the row is gone by the time receivers run (``gear_uninstall`` needs them).
on_uninstalled: Signal = signals.signal("installation-uninstalled")
#: The installation's config or secrets changed (restart the worker with them).
on_config_changed: Signal = signals.signal("installation-config-changed")
#: Enabled or disabled, by a user or by the runtime's circuit breaker.
on_enabled_changed: Signal = signals.signal("installation-enabled-changed")


@dataclass(frozen=True)
class InstallationEvent:
    """A snapshot of the installation when the change was committed.

    A plain value rather than the ORM row: receivers may run in another thread
    or after the session is closed. ``secrets`` is filled only for
    :data:`on_uninstalled`; otherwise use
    :func:`marketplace.workspaces.secrets.installation_secrets` on the row.
    """

    id: str
    workspace: str
    gear: str
    version: str
    status: str
    enabled: bool
    config: dict[str, Any] = field(default_factory=dict)
    previous_version: str | None = None
    secrets: dict[str, Any] = field(default_factory=dict, repr=False)


def announce(signal: Signal, event: InstallationEvent) -> None:
    """Send ``signal`` to every receiver; a receiver's failure is logged, not raised."""
    for receiver in list(signal.receivers_for(event)):
        try:
            receiver(event)
        except Exception:
            log.exception("receiver %r of %s failed for installation %s",
                          receiver, getattr(signal, "name", "a signal"), event.id)
