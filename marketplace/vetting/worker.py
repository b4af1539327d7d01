"""Running vetting jobs: ``marketplace vet worker`` processes.

Vetting never runs in a web server process: a check chewing on a hostile
archive would hold the interpreter and starve the worker's heartbeat, and
gunicorn would kill it. Production runs one or more ``marketplace vet worker``
processes (any number, on any host that reaches the database and the blob
store); ``marketplace serve`` starts ``GEARS_VETTING_WORKERS`` of them beside
gunicorn (1 by default, ``0`` when dedicated workers run elsewhere) and stops
them with it. Each job then runs in a child process of its own with a time
budget (:mod:`~marketplace.vetting.runner`). All use the same atomic claim.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from marketplace.blobs import get_blob_store
from marketplace.db import database
from marketplace.models import GearVersion
from marketplace.registry import states
from marketplace.registry.signing import keyring, sign_version
from marketplace.settings import as_bool
from marketplace.vetting.context import SandboxOptions
from marketplace.vetting.jobs import MAX_ATTEMPTS, Approver, claim, run_claim

log = logging.getLogger(__name__)

def setting(app: Flask, name: str) -> Any:
    """``app.config[name]``: the settings table (:mod:`marketplace.settings`) put the
    environment's value, or the default, there."""
    return app.config[name]


def flag(app: Flask, name: str) -> bool:
    return as_bool(setting(app, name))


def sandbox_options(app: Flask) -> SandboxOptions:
    """The dynamic check's sandbox, from the app's settings: its own minimum level, else
    the engine's (``SANDBOX_MIN_LEVEL``), else the runtime's platform default."""
    return SandboxOptions(enabled=flag(app, "VETTING_SANDBOX"),
                          level=setting(app, "VETTING_SANDBOX_LEVEL") or None,
                          min_level=(setting(app, "VETTING_SANDBOX_MIN_LEVEL")
                                     or setting(app, "SANDBOX_MIN_LEVEL") or None))


def job_budget(app: Flask) -> float | None:
    """Seconds one job may run (``VETTING_JOB_SECONDS``), in its own process; ``None``
    only when ``VETTING_ISOLATE`` is off (tests that replace a check in this process)."""
    if not flag(app, "VETTING_ISOLATE"):
        return None
    return float(setting(app, "VETTING_JOB_SECONDS"))


def make_approver(app: Flask) -> Approver:
    """Auto-approval, signed with the registry key, for verified publishers."""
    ring, store = keyring(app), get_blob_store(app)

    def approve(session: Session, version: GearVersion, reason: str) -> None:
        states.auto_approve(session, version, reason=reason,
                            sign=lambda s, v: sign_version(s, v, ring, store))

    return approve


def process_one(app: Flask, worker: str | None = None) -> bool:
    """Claim and run one job; ``False`` when the queue is empty."""
    session = database(app).sessionmaker()
    try:
        stale = float(setting(app, "VETTING_STALE_SECONDS"))
        from datetime import timedelta

        got = claim(session, worker, stale_after=timedelta(seconds=stale),
                    max_attempts=MAX_ATTEMPTS)
        if got is None:
            return False
        log.info("vetting job %s (version %s), attempt %s", got.job_id, got.version_id,
                 got.attempt)
        run_claim(session, get_blob_store(app), got, sandbox_options(app), make_approver(app),
                  budget=job_budget(app))
        return True
    finally:
        session.close()


def run_worker(app: Flask, *, once: bool = False, poll: float = 2.0,
               stop: threading.Event | None = None) -> int:
    """Process jobs; with ``once`` until the queue is empty, else until ``stop`` is set.
    Returns how many jobs ran."""
    done = 0
    stop = stop or threading.Event()
    while not stop.is_set():
        try:
            ran = process_one(app)
        except Exception:  # the loop outlives a bad job or a DB blip
            log.exception("vetting worker: unexpected error; retrying")
            ran = False
            if once:
                raise
        if ran:
            done += 1
            continue
        if once:
            break
        stop.wait(poll)
    return done


def start_processes(count: int) -> list[subprocess.Popen[bytes]]:
    """Start ``count`` ``marketplace vet worker`` processes beside the web server (what
    ``marketplace serve`` does), with the server's environment and so its settings."""
    return [subprocess.Popen([sys.executable, "-m", "marketplace", "vet", "worker"])
            for _ in range(count)]


def stop_processes(procs: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """Stop the processes :func:`start_processes` started: SIGTERM, then SIGKILL after
    ``grace`` seconds. A job they were running is killed with them and re-claimed later."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
