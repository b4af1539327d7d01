"""Demo accounts: people and places to try the marketplace with.

Idempotent: what exists is left alone, and a password is printed only when
its account is created (it is never stored in plaintext, so it cannot be
shown again).
"""

from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from marketplace.accounts import service
from marketplace.audit import SystemActor
from marketplace.models import Role

DEMO_DEVELOPER = "dev@gears.local"
DEMO_BUSINESS = "biz@gears.local"
DEMO_PUBLISHER = "acme"
DEMO_WORKSPACE = "demo"


def new_password() -> str:
    """A random password that is easy to copy from a terminal."""
    return secrets.token_urlsafe(12)


def seed_accounts(session: Session) -> list[str]:
    """Create the demo accounts that are missing; returns lines to show the operator."""
    lines: list[str] = []
    for email, role in ((DEMO_DEVELOPER, Role.developer), (DEMO_BUSINESS, Role.business)):
        if service.get_user(session, email) is None:
            password = new_password()
            service.create_user(session, email, role, password, actor=SystemActor.seed)
            lines.append(f"created {role.value} {email} with password {password}")
    if service.get_publisher(session, DEMO_PUBLISHER) is None:
        service.create_publisher(session, DEMO_PUBLISHER, DEMO_DEVELOPER,
                                 display_name="Acme Corp", actor=SystemActor.seed)
        lines.append(f"created publisher {DEMO_PUBLISHER} owned by {DEMO_DEVELOPER}")
    if service.get_workspace(session, DEMO_WORKSPACE) is None:
        service.create_workspace(session, DEMO_WORKSPACE, DEMO_BUSINESS,
                                 display_name="Demo workspace", actor=SystemActor.seed)
        lines.append(f"created workspace {DEMO_WORKSPACE} with member {DEMO_BUSINESS}")
    return lines
