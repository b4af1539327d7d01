"""State changes of a published version: review, yank, quarantine.

Every change is a conditional ``UPDATE`` of the version's row (``WHERE status =
'pending'``, ``WHERE yanked = false`` …) under a lock of its gear's row, and
writes its audit entry in the same transaction: of concurrent conflicting
changes exactly one wins, the others get ``409 invalid_state`` with the state
the version is in now.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from gears_sdk.versions import Version
from marketplace import audit
from marketplace.errors import MarketplaceError
from marketplace.models import Gear, GearVersion, User, VersionStatus
from marketplace.registry.publish import version_state
from marketplace.registry.queries import is_public

MAX_REASON = 2000

#: Signs an approved version inside the approval's transaction (see
#: :func:`marketplace.registry.signing.sign_version`).
Signer = Callable[[Session, GearVersion], object]


def check_reason(reason: str | None, *, required: bool, what: str) -> str | None:
    """A reason as stored: stripped, or ``None``; 422 when required and empty, or longer
    than :data:`MAX_REASON` as sent (the documented ``maxLength``, spaces included)."""
    if reason and len(reason) > MAX_REASON:
        raise MarketplaceError(
            422, "reason_too_long", f"the reason may be at most {MAX_REASON} characters",
            [{"path": "$.reason", "message": "too long", "code": "too_long"}],
        )
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
    gear.listed = any(is_public(v) for v in gear.versions)


def lock_gear(session: Session, gear_id: int) -> None:
    """Hold the gear's row until the transaction ends (PostgreSQL ``FOR NO KEY UPDATE``).

    Every state change of any of the gear's versions takes this lock first, so
    the listing, the newest-version fields and the install count each gear
    derives from its rows are computed from committed, current rows. SQLite
    has no row locks: there the conditional ``UPDATE`` that follows takes the
    database's single write lock, which serializes just as well.
    """
    session.execute(select(Gear.id).where(Gear.id == gear_id).with_for_update(key_share=True))


def _claim(session: Session, version: GearVersion, expected: dict[str, Any],
           values: dict[str, Any], refusal: Callable[[GearVersion], str]) -> dict[str, Any]:
    """Move ``version`` from the ``expected`` state to ``values`` with one conditional
    ``UPDATE``; returns the state before. Exactly one of concurrent conflicting changes
    matches the condition; the others are rolled back and get ``409 invalid_state`` with
    the version's state now (``refusal`` words the message)."""
    lock_gear(session, version.gear_id)
    condition = [getattr(GearVersion, name) == value for name, value in expected.items()]
    result = session.execute(
        update(GearVersion).where(GearVersion.id == version.id, *condition).values(**values),
        execution_options={"synchronize_session": False})
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        session.refresh(version)
        raise MarketplaceError(409, "invalid_state", refusal(version),
                               current=version_state(version))
    session.refresh(version)
    session.expire(version.gear)
    before = version_state(version)
    before.update({name: value.value if isinstance(value, VersionStatus) else value
                   for name, value in expected.items()})
    return before


def _finish(session: Session, actor: audit.Actor, version: GearVersion, action: str,
            reason: str | None, before: dict[str, Any]) -> GearVersion:
    refresh_listing(version.gear)
    audit.record(session, actor, action, "version",
                 f"{version.gear.name}@{version.version}", before=before,
                 after=version_state(version), reason=reason)
    session.commit()
    return version


def _not_pending(version: GearVersion) -> str:
    return (f"{version.gear.name} {version.version} is {version.status.value}; only pending "
            "versions can be reviewed")


def review(session: Session, actor: User | audit.SystemActor, version: GearVersion, *,
           approve: bool, reason: str | None, sign: Signer | None = None,
           only_if: dict[str, Any] | None = None) -> GearVersion:
    """Approve or reject a pending version; a rejection needs a reason.

    An approval is signed by ``sign`` in the same transaction: a version is
    never approved without its signature, nor signed without being approved.
    Of concurrent reviews of one version exactly one wins (see :func:`_claim`);
    only the winner signs and writes an audit entry. ``only_if`` adds column
    conditions to that update (the demo seed approves only its own bytes, never
    a yanked or quarantined version).
    """
    reason = check_reason(reason, required=not approve, what="rejection")
    if version.status is not VersionStatus.pending:
        raise MarketplaceError(409, "invalid_state", _not_pending(version),
                               current=version_state(version))
    before = _claim(session, version, {"status": VersionStatus.pending, **(only_if or {})}, {
        "status": VersionStatus.approved if approve else VersionStatus.rejected,
        "review_reason": reason, "reviewed_at": datetime.now(UTC),
        "reviewed_by_id": actor.id if isinstance(actor, User) else None,
    }, _not_pending)
    if approve:
        _refresh_gear(version)
        if sign is not None:
            sign(session, version)
    return _finish(session, actor, version,
                   "version.approve" if approve else "version.reject", reason, before)


def _refresh_gear(version: GearVersion) -> None:
    """The gear's listing shows what its newest approved version says."""
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
    reason = check_reason(reason, required=yanked, what="yank")

    def refusal(v: GearVersion) -> str:
        return f"{v.gear.name} {v.version} is {'already' if yanked else 'not'} yanked"

    if version.yanked == yanked:
        raise MarketplaceError(409, "invalid_state", refusal(version),
                               current=version_state(version))
    before = _claim(session, version, {"yanked": not yanked}, {
        "yanked": yanked, "yank_reason": reason if yanked else None,
        "yanked_at": datetime.now(UTC) if yanked else None,
    }, refusal)
    return _finish(session, actor, version, "version.yank" if yanked else "version.unyank",
                   reason, before)


def auto_approve(session: Session, version: GearVersion, *, reason: str,
                 sign: Signer | None) -> GearVersion:
    """Approval by the vetting pipeline itself (no actor); the caller has checked the
    conditions (:func:`marketplace.vetting.approval.auto_approval_refusal`). Does not commit:
    it joins the transaction that records the vetting report.

    Like a review, it is a conditional update: when an admin reviewed the version while
    it was being vetted, the admin's decision stands and nothing is approved or signed.
    """
    lock_gear(session, version.gear_id)
    result = session.execute(
        update(GearVersion).where(GearVersion.id == version.id,
                                  GearVersion.status == VersionStatus.pending)
        .values(status=VersionStatus.approved, review_reason=reason, reviewed_by_id=None,
                reviewed_at=datetime.now(UTC)),
        execution_options={"synchronize_session": False})
    session.refresh(version)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return version
    session.expire(version.gear)
    before = {**version_state(version), "status": VersionStatus.pending.value}
    _refresh_gear(version)
    refresh_listing(version.gear)
    if sign is not None:
        sign(session, version)
    audit.record(session, audit.SystemActor.vetting, "version.auto_approve", "version",
                 f"{version.gear.name}@{version.version}", before=before,
                 after=version_state(version), reason=reason)
    return version


def set_quarantined(session: Session, actor: User, version: GearVersion, *, quarantined: bool,
                    reason: str | None) -> GearVersion:
    """Quarantine blocks a version from loading anywhere (through the signed kill list)
    and from download; both directions need a reason, as both change what runs."""
    reason = check_reason(reason, required=True,
                     what="quarantine" if quarantined else "release from quarantine")

    def refusal(v: GearVersion) -> str:
        return (f"{v.gear.name} {v.version} is "
                f"{'already' if quarantined else 'not'} quarantined")

    if version.quarantined == quarantined:
        raise MarketplaceError(409, "invalid_state", refusal(version),
                               current=version_state(version))
    before = _claim(session, version, {"quarantined": not quarantined}, {
        "quarantined": quarantined, "quarantine_reason": reason if quarantined else None,
    }, refusal)
    return _finish(session, actor, version,
                   "version.quarantine" if quarantined else "version.unquarantine", reason,
                   before)
