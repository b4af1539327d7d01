"""Capabilities in plain language, and what changes between two versions.

Everything here derives from the one table in :mod:`gears_sdk.capabilities`
(the same table the runtime's checks are registered against): a gear's
``permissions`` become capability strings (``network:api.example.com``,
``catalog.read:price``). Installing asks the user to consent to all of them;
an upgrade asks again only for the ones it adds (:func:`capability_diff`).
:func:`describe_capability` is the sentence the consent screen and the API
show next to each one.
"""

from __future__ import annotations

from typing import Any

from gears_sdk.capabilities import (
    CapabilityDiff,
    capability_diff,
    capability_ids,
    describe_capability,
)

__all__ = ["CapabilityDiff", "capabilities_of", "capability_diff", "describe_capability",
           "described"]


def capabilities_of(manifest: dict[str, Any] | None) -> list[str]:
    """The sorted capability strings a manifest's ``permissions`` grant."""
    return capability_ids(manifest) if manifest else []


def described(caps: list[str]) -> list[dict[str, str]]:
    """``[{"capability", "description"}, …]``: what the API and the consent screen show."""
    return [{"capability": c, "description": describe_capability(c)} for c in caps]
