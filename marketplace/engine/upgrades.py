"""Engine upgrades: which installations can run on the engine version this process runs.

A gear's manifest names the engine versions it works with (``"engine": ">=1.0.0
<2.0.0"``). The engine's version is the package version, or the
``ENGINE_VERSION`` setting when an operator tries an upgrade
(:func:`marketplace.settings.engine_version`). When an engine starts,
:func:`reconcile_engine_version` compares every installation's installed
version with it: an active installation whose range excludes it is
``suspended`` with the reason ("acme/reco 1.2.0 needs engine ^2.0.0; this
engine is 1.3.0"), and a suspended one whose range includes it again resumes
to ``active`` — each change one conditional update, audited as the engine.
The engine never starts a worker for a version that cannot run on it
(:class:`~marketplace.engine.manager.EngineManager` checks the range too), and
installs and upgrades in the workspace leave suspended gears out of their
resolution (:mod:`marketplace.workspaces.planning`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask

from marketplace.db import database
from marketplace.settings import engine_version
from marketplace.workspaces.service import set_suspended, suspensions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reconciled:
    """What one reconciliation changed: installation ids suspended and resumed."""

    engine: str
    suspended: tuple[str, ...] = ()
    resumed: tuple[str, ...] = ()


def reconcile_engine_version(app: Flask) -> Reconciled:
    """Suspend the installations that cannot run on this engine and resume those that
    can again; run once when an engine starts (embedded or as a node)."""
    engine = engine_version(app.config)
    suspended: list[str] = []
    resumed: list[str] = []
    with database(app).sessionmaker() as session:
        changes = suspensions(session, engine)
        session.rollback()
        for iid, version, reason in changes:
            done = set_suspended(session, iid, version=version, suspended=reason is not None,
                                 reason=reason)
            if done is None:
                continue  # changed meanwhile (another engine, a user, an upgrade)
            if reason is not None:
                log.warning("installation %s suspended: %s", iid, reason)
                suspended.append(iid)
            else:
                log.info("installation %s resumed: it runs on engine %s", iid, engine)
                resumed.append(iid)
    return Reconciled(engine, tuple(suspended), tuple(resumed))
