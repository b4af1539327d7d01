"""State changes of a published version: review, yank, quarantine.

Every change is checked against the version's current state and writes its
audit entry in the same transaction as the change itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from marketplace import audit
from marketplace.errors import MarketplaceError
from marketplace.models import Gear, GearVersion, User, VersionStatus
from marketplace.registry.publish import version_state

MAX_REASON = 2000

#: Signs an approved version inside the approval's transaction (see
#: :func:`marketplace.registry.signing.sign_version`).
Signer = Callable[[Session, GearVersion], object]


def _reason(reason: str | None, *, required: bool, what: str) -> str | None:
    reason = (reason or "").strip() or None
    if required and not reason:
        raise MarketplaceError(
            422, "reason_required", f"a {what} needs a reason the publisher can read",
            [{"path": "$.reason", "message": "must not be empty", "code": "required"}],
        )
    if reason and len(reason) > MAX_REASON:
        raise MarketplaceError(
            422, "reason_too_long", f"the reason may be at most {MAX_REASON} characters",
            [{"path": "$.reason", "message": "too long", "code": "too_long"}],
        )
    return reason


def refresh_listing(gear: Gear) -> None:
    """``gear.listed``: whether any version is public (approved, not yanked, not
    quarantined). Every version state change goes through here."""
    from marketplace.registry.queries import is_public

    gear.listed = any(is_public(v) for v in gear.versions)


def _change(session: Session, actor: User | None, version: GearVersion, action: str,
            reason: str | None, apply: object) -> GearVersion:
    before = version_state(version)
    apply()  # type: ignore[operator]
    refresh_listing(version.gear)
    audit.record(session, actor, action, "version",
                 f"{version.gear.name}@{version.version}", before=before,
                 after=version_state(version), reason=reason)
    session.commit()
    return version


def review(session: Session, actor: User, version: GearVersion, *, approve: bool,
           reason: str | None, sign: Signer | None = None) -> GearVersion:
    """Approve or reject a pending version; a rejection needs a reason.

    An approval is signed by ``sign`` in the same transaction: a version is
    never approved without its signature, nor signed without being approved.
    """
    reason = _reason(reason, required=not approve, what="rejection")
    if version.status is not VersionStatus.pending:
        raise MarketplaceError(
            409, "invalid_state",
            f"{version.gear.name} {version.version} is {version.status.value}; only pending "
            "versions can be reviewed",
        )

    def apply() -> None:
        version.status = VersionStatus.approved if approve else VersionStatus.rejected
        version.review_reason = reason
        version.reviewed_by_id = actor.id
        version.reviewed_at = datetime.now(UTC)
        if approve:
            _refresh_gear(version)
            if sign is not None:
                sign(session, version)

    return _change(session, actor, version, "version.approve" if approve else "version.reject",
                   reason, apply)


def _refresh_gear(version: GearVersion) -> None:
    """The gear's listing shows what its newest approved version says."""
    from gears_sdk.versions import Version

    gear = version.gear
    approved = [v for v in gear.versions if v.status is VersionStatus.approved] + [version]
    newest = max(approved, key=lambda v: Version.parse(v.version))
    m = newest.manifest
    gear.title, gear.summary = m["title"], m["summary"]
    gear.categories = list(m.get("categories") or [])
    gear.updated_at = datetime.now(UTC)


def set_yanked(session: Session, actor: User, version: GearVersion, *, yanked: bool,
               reason: str | None) -> GearVersion:
    """Yank hides a version from new installs; it stays downloadable by exact version."""
    reason = _reason(reason, required=yanked, what="yank")
    if version.yanked == yanked:
        raise MarketplaceError(
            409, "invalid_state",
            f"{version.gear.name} {version.version} is {'already' if yanked else 'not'} yanked",
        )

    def apply() -> None:
        version.yanked = yanked
        version.yank_reason = reason if yanked else None
        version.yanked_at = datetime.now(UTC) if yanked else None

    return _change(session, actor, version, "version.yank" if yanked else "version.unyank",
                   reason, apply)


def auto_approve(session: Session, version: GearVersion, *, reason: str,
                 sign: Signer | None) -> GearVersion:
    """Approval by the vetting pipeline itself (no actor); the caller has checked the
    conditions (:func:`marketplace.vetting.jobs.auto_approval_refusal`). Does not commit:
    it joins the transaction that records the vetting report."""
    before = version_state(version)
    version.status = VersionStatus.approved
    version.review_reason = reason
    version.reviewed_by_id = None
    version.reviewed_at = datetime.now(UTC)
    _refresh_gear(version)
    refresh_listing(version.gear)
    if sign is not None:
        sign(session, version)
    audit.record(session, None, "version.auto_approve", "version",
                 f"{version.gear.name}@{version.version}", before=before,
                 after=version_state(version), reason=reason)
    return version


def set_quarantined(session: Session, actor: User, version: GearVersion, *, quarantined: bool,
                    reason: str | None) -> GearVersion:
    """Quarantine blocks a version from loading anywhere (through the signed kill list)
    and from download; both directions need a reason, as both change what runs."""
    reason = _reason(reason, required=True,
                     what="quarantine" if quarantined else "release from quarantine")
    if version.quarantined == quarantined:
        raise MarketplaceError(
            409, "invalid_state",
            f"{version.gear.name} {version.version} is "
            f"{'already' if quarantined else 'not'} quarantined",
        )

    def apply() -> None:
        version.quarantined = quarantined
        version.quarantine_reason = reason if quarantined else None

    return _change(session, actor, version,
                   "version.quarantine" if quarantined else "version.unquarantine", reason,
                   apply)
