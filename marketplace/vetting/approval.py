"""When vetting may approve on its own, and why a version is waiting for a human.

Auto-approval is a shortcut for a routine update, never for a new gear nor
for new powers. A version is auto-approved only when **all** of these hold:

* it is still ``pending``, and its publisher is verified;
* the dynamic test ran (a ``sandbox_ok`` finding) and **every** finding is
  ``info``;
* an earlier approved version of the same gear exists (lower semver
  precedence, not quarantined) — its *baseline* — and the version's
  capabilities are a subset of the baseline's.

A first version therefore always waits for a human, whoever publishes it, as
does any capability growth: "no new capabilities" says nothing when there is
nothing to compare with. The capability comparison goes through
:func:`capability_growth`, the one place that decides it, on the same diff
the consent screen and the review page use.
"""

from __future__ import annotations

from typing import Any

from gears_sdk.versions import Version
from marketplace.models import GearVersion, VersionStatus
from marketplace.vetting.findings import rank
from marketplace.workspaces.capabilities import capability_diff


def baseline(version: GearVersion) -> GearVersion | None:
    """The newest approved, non-quarantined version of the same gear that precedes
    ``version`` (semver precedence), or ``None`` for a first version."""
    mine = Version.parse(version.version)
    earlier = [v for v in version.gear.versions
               if v.id != version.id and v.status is VersionStatus.approved
               and not v.quarantined and Version.parse(v.version).compare(mine) < 0]
    return max(earlier, key=lambda v: Version.parse(v.version), default=None)


def capability_growth(baseline_manifest: dict[str, Any] | None,
                      manifest: dict[str, Any]) -> list[str]:
    """Capabilities ``manifest`` asks for that ``baseline_manifest`` did not grant."""
    return list(capability_diff(baseline_manifest, manifest).added)


def auto_approval_refusal(version: GearVersion, findings: list[dict[str, Any]]) -> str | None:
    """Why ``version`` may not be auto-approved (the sentence the admin pages show), or
    ``None`` when it may."""
    if version.status is not VersionStatus.pending:
        return f"it is {version.status.value}"
    above = sorted({str(f.get("code")) for f in findings
                    if rank(str(f.get("severity"))) > rank("info")})
    if above:
        return "it has findings above info: " + ", ".join(above)
    if not any(f.get("code") == "sandbox_ok" for f in findings):
        return "the dynamic test did not run cleanly in the sandbox"
    base = baseline(version)
    if base is None:
        return "it is the first version of this gear: a first version always needs a human"
    grown = capability_growth(base.manifest, version.manifest)
    if grown:
        return (f"it asks for capabilities {base.version} did not have: "
                + ", ".join(grown))
    if not version.gear.publisher.verified:
        return "the publisher is not verified"
    return None


def approval_reason(version: GearVersion) -> str:
    """The review reason an auto-approval records."""
    base = baseline(version)
    since = f" than {base.version}" if base else ""
    return ("auto-approved: verified publisher, every finding info, no capability "
            f"beyond what an admin approved{since}")


def waiting_reason(version: GearVersion, findings: list[dict[str, Any]] | None,
                   vetted: bool) -> str | None:
    """Why a pending version waits for a human, for the review queue and page."""
    if version.status is not VersionStatus.pending:
        return None
    if not vetted:
        return "vetting has not finished"
    return auto_approval_refusal(version, findings or []) or (
        "it qualifies for auto-approval; the vetting run that would approve it has not "
        "recorded it yet")
