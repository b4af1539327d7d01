"""Running vetting jobs: ``marketplace vet worker`` and the optional in-process thread.

Production runs one or more ``marketplace vet worker`` processes (any
number, on any host that reaches the database and the blob store). For a
one-machine setup (``make run``) the registry itself can vet in a background
thread, started in each server process on its first request, when
``VETTING_INLINE_THREAD`` is on (``GEARS_VETTING_INLINE_THREAD``; ``marketplace
serve`` turns it on unless the variable says ``0``). Both use the same
atomic claim, so they can also run side by side.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from flask import Flask
from sqlalchemy.orm import Session

from marketplace.models import GearVersion
from marketplace.vetting.context import SandboxOptions
from marketplace.vetting.jobs import MAX_ATTEMPTS, STALE_AFTER, Approver, claim, run_claim

log = logging.getLogger(__name__)

FALSE = ("0", "false", "no", "off")
_threads: dict[int, threading.Thread] = {}
_threads_lock = threading.Lock()


def setting(app: Flask, name: str, default: Any = None) -> Any:
    """``app.config[name]``, else ``GEARS_<name>`` from the environment, else ``default``."""
    if name in app.config:
        return app.config[name]
    return os.environ.get(f"GEARS_{name}", default)


def flag(app: Flask, name: str, default: bool) -> bool:
    value = setting(app, name, None)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in FALSE


def sandbox_options(app: Flask) -> SandboxOptions:
    return SandboxOptions(enabled=flag(app, "VETTING_SANDBOX", True),
                          level=setting(app, "VETTING_SANDBOX_LEVEL") or None,
                          min_level=setting(app, "VETTING_SANDBOX_MIN_LEVEL") or None)


def make_approver(app: Flask) -> Approver:
    """Auto-approval, signed with the registry key, for verified publishers."""
    from marketplace.blobs import get_blob_store
    from marketplace.registry import states
    from marketplace.registry.signing import keyring, sign_version

    ring, store = keyring(app), get_blob_store(app)

    def approve(session: Session, version: GearVersion, reason: str) -> None:
        states.auto_approve(session, version, reason=reason,
                            sign=lambda s, v: sign_version(s, v, ring, store))

    return approve


def process_one(app: Flask, worker: str | None = None) -> bool:
    """Claim and run one job; ``False`` when the queue is empty."""
    from marketplace.blobs import get_blob_store
    from marketplace.db import database

    session = database(app).sessionmaker()
    try:
        stale = float(setting(app, "VETTING_STALE_SECONDS", STALE_AFTER.total_seconds()))
        from datetime import timedelta

        got = claim(session, worker, stale_after=timedelta(seconds=stale),
                    max_attempts=MAX_ATTEMPTS)
        if got is None:
            return False
        log.info("vetting job %s (version %s), attempt %s", got.job_id, got.version_id,
                 got.attempt)
        run_claim(session, get_blob_store(app), got, sandbox_options(app), make_approver(app))
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


def ensure_inline_thread(app: Flask) -> threading.Thread | None:
    """Start this process's background vetting thread once (after a fork, anew)."""
    if not flag(app, "VETTING_INLINE_THREAD", False):
        return None
    pid = os.getpid()
    with _threads_lock:
        thread = _threads.get(pid)
        if thread is None or not thread.is_alive():
            poll = float(setting(app, "VETTING_POLL_SECONDS", 2.0))
            thread = threading.Thread(target=run_worker, args=(app,),
                                      kwargs={"poll": poll}, name="gears-vetting",
                                      daemon=True)
            thread.start()
            _threads[pid] = thread
            time.sleep(0)
    return thread
