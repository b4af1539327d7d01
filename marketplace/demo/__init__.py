"""The living demo that ``make run`` serves.

Idempotent: what exists is left alone, and a password or token is printed
only when it is created (they are stored hashed, so they cannot be shown
again). Everything goes through the product's own paths: the example gears
are built, published through the publish steps, vetted by the vetting queue,
approved and signed through the review; installs go through the workspace
service (config validation, consent, resolution); events go through the
engine, whose sandboxed extension gears turn them into traits.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask

from marketplace.accounts import service, tokens
from marketplace.audit import SystemActor
from marketplace.db import session_scope
from marketplace.demo.accounts import (
    DEMO_BUSINESS,
    DEMO_DEVELOPER,
    DEMO_PUBLISHER,
    DEMO_WORKSPACE,
    new_password,
    seed_accounts,
)
from marketplace.demo.gears import approve_own, build_examples, publish_examples
from marketplace.demo.workspace import install_gears, seed_engine

__all__ = ["DEMO_BUSINESS", "DEMO_DEVELOPER", "DEMO_PUBLISHER", "DEMO_WORKSPACE",
           "new_password", "seed_accounts", "seed_demo"]


def seed_demo(app: Flask, say: Callable[[str], None] = print) -> None:
    """Accounts, then gears, then the workspace: each step only adds what is missing,
    and everything is audited as the ``demo-seed`` actor."""
    with session_scope(app) as session:
        created = seed_accounts(session)
        session.commit()
        for line in created:
            say(line)
        if any(DEMO_BUSINESS in line and "created business" in line for line in created):
            user = service.require_user(session, DEMO_BUSINESS)
            token, _ = tokens.create_token(session, user, [f"workspace:{DEMO_WORKSPACE}"],
                                           name="demo", expires_days=30,
                                           actor=SystemActor.seed)
            session.commit()
            say(f"workspace token for {DEMO_BUSINESS} (workspace:{DEMO_WORKSPACE}): {token}")
        examples = build_examples()
        if not examples:
            say("example_gears/ not found next to the package: no demo gears to publish")
            return
        publish_examples(app, session, DEMO_DEVELOPER, say, examples)
        approve_own(app, session, say, examples)
        ids = install_gears(session, DEMO_WORKSPACE, examples, say)
        seed_engine(app, session, DEMO_WORKSPACE, ids, say)
