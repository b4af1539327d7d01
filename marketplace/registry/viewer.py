"""Who is asking for registry data, and what they may see of a gear.

Its own module because both the queries and the catalog search need it, and
neither should import the other to get it.
"""

from __future__ import annotations

from dataclasses import dataclass

from marketplace.accounts import token_allows
from marketplace.models import ApiToken, Gear, User


@dataclass(frozen=True)
class Viewer:
    """Who is asking: anonymous, a token's user, or a signed-in web user."""

    user: User | None = None
    token: ApiToken | None = None

    @property
    def is_admin(self) -> bool:
        if self.user is None or self.user.role.value != "admin":
            return False
        return self.token is None or token_allows(self.token, "admin")

    def manages(self, gear: Gear) -> bool:
        """Admins and members of the gear's publisher see its unreleased versions."""
        if self.is_admin:
            return True
        if self.user is None:
            return False
        publisher = gear.name.split("/", 1)[0]
        if self.token is not None:
                return token_allows(self.token, f"publish:{publisher}")
        return any(m.user_id == self.user.id for m in gear.publisher.members)
