"""Automated vetting of every uploaded version.

Publishing queues a job (:mod:`~marketplace.vetting.jobs`); a worker — the
``marketplace vet worker`` command or the registry's optional in-process
thread (:mod:`~marketplace.vetting.worker`) — runs the checks
(:mod:`~marketplace.vetting.checks`) and stores their findings
(:mod:`~marketplace.vetting.findings`) on a report the API, the ``gears
status`` command and the admin pages show. Vetting never approves on its
own, except for verified publishers with nothing above ``info``.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the tables and, when enabled, start the background thread on the first
    request of each server process (so it runs in gunicorn's workers, after the fork)."""
    from marketplace.vetting import models  # noqa: F401 (tables on Base.metadata)
    from marketplace.vetting.worker import ensure_inline_thread

    # Checked per request, not here: ``marketplace serve`` turns the setting on after
    # the app is built, and the thread must start in each server process after the fork.
    def start_vetting_thread() -> None:
        ensure_inline_thread(app)

    app.before_request(start_vetting_thread)
