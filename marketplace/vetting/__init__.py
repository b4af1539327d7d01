"""Automated vetting of every uploaded version.

Publishing queues a job (:mod:`~marketplace.vetting.jobs`); a worker — the
``marketplace vet worker`` command, which ``marketplace serve`` also starts
(:mod:`~marketplace.vetting.worker`) — runs the checks, each job in a process of
its own with a time budget (:mod:`~marketplace.vetting.runner`),
(:mod:`~marketplace.vetting.checks`) and stores their findings
(:mod:`~marketplace.vetting.findings`) on a report the API, the ``gears
status`` command and the admin pages show. Vetting never approves on its
own, except a routine update (:mod:`~marketplace.vetting.approval`): a verified
publisher, nothing above ``info``, and no capability beyond an earlier approved
version of the same gear.
"""

from __future__ import annotations

from flask import Flask

from marketplace.vetting import models  # noqa: F401 (tables on Base.metadata)


def init_app(app: Flask) -> None:
    """Nothing to set up: importing the package registers the tables. Jobs run in
    ``marketplace vet worker`` processes, never in the web server's
    (:mod:`~marketplace.vetting.worker`)."""
