"""Capabilities in plain language, and what changes between two versions.

A gear's ``permissions`` become flat capability strings
(:meth:`gears_sdk.manifest.Permissions.capabilities`, e.g.
``network:api.example.com``). Installing asks the user to consent to all of
them; an upgrade asks again only for the ones it adds
(:func:`capability_diff`). :func:`describe_capability` is the sentence the
consent screen and the API show next to each one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gears_sdk.manifest import Permissions


def capabilities_of(manifest: dict[str, Any] | None) -> list[str]:
    """The sorted capability strings a manifest's ``permissions`` grant."""
    if not manifest:
        return []
    return sorted(Permissions.from_dict(manifest.get("permissions") or {}).capabilities())


@dataclass(frozen=True)
class CapabilityDiff:
    """What an upgrade (or downgrade) changes in what a gear may do."""

    added: list[str]
    removed: list[str]
    unchanged: list[str]

    @property
    def grows(self) -> bool:
        """Whether the target asks for anything new (then the user must consent again)."""
        return bool(self.added)


def capability_diff(old_manifest: dict[str, Any] | None,
                    new_manifest: dict[str, Any]) -> CapabilityDiff:
    """Compare the capabilities of two manifests (``old_manifest=None``: a fresh install)."""
    old, new = set(capabilities_of(old_manifest)), set(capabilities_of(new_manifest))
    return CapabilityDiff(added=sorted(new - old), removed=sorted(old - new),
                          unchanged=sorted(old & new))


def _host(pattern: str) -> str:
    host, _, port = pattern.partition(":")
    where = f"any sub-domain of {host[2:]}" if host.startswith("*.") else host
    return f"{where} on port {port}" if port else where


def _profile(verb: str, field: str) -> str:
    if field in ("*", ""):
        return f"{verb} everything in your profiles"
    if field.endswith(".*"):
        return f"{verb} your profiles' {field[:-2]} (all of them)"
    if "." not in field:
        return f"{verb} your profiles' {field}"
    return f"{verb} the profile field {field}"


def describe_capability(cap: str) -> str:
    """A sentence for one capability, e.g. ``network:api.example.com`` →
    "Send requests to api.example.com"; unknown kinds are shown as they are."""
    kind, _, arg = cap.partition(":")
    if kind == "network":
        return f"Send requests to {_host(arg)}"
    if kind == "profile.read":
        return _profile("Read", arg)
    if kind == "profile.write":
        return _profile("Change", arg)
    if kind == "catalog":
        return {"read": "Read the product catalog",
                "write": "Change the product catalog"}.get(arg, cap)
    if kind == "events":
        return {"read": "Read your events", "write": "Record new events"}.get(arg, cap)
    if kind == "secrets":
        return f"Use the secret {arg}"
    return cap


def described(caps: list[str]) -> list[dict[str, str]]:
    """``[{"capability", "description"}, …]``: what the API and the consent screen show."""
    return [{"capability": c, "description": describe_capability(c)} for c in caps]
