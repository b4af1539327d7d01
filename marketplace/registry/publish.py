"""The publish path: one upload becomes one immutable, pending version.

Each step is a small named function that either returns what the next step
needs or raises a :class:`~marketplace.errors.MarketplaceError` with a stable
code. The order matters for consistency: the blob is written and verified
*before* the version row commits, so a failure anywhere leaves no visible
version (at worst an unreferenced blob, which ``marketplace gc`` removes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from gears_sdk.archive import GearArchive, read_archive
from gears_sdk.errors import ArchiveError, ManifestError
from gears_sdk.manifest import Manifest
from gears_sdk.versions import precedence_key
from marketplace import audit
from marketplace.accounts import RESERVED_NAMES, token_allows
from marketplace.audit import SystemActor
from marketplace.db import COMMITTING
from marketplace.errors import MarketplaceError
from marketplace.models import ApiToken, Gear, GearVersion, Publisher, User, VersionStatus
from marketplace.storage import BlobStore, StorageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Upload:
    """What the client sent: the archive bytes and who sent them."""

    data: bytes
    user: User
    token: ApiToken | None
    #: Who the audit log names when not ``user`` (the demo seed publishing its examples).
    actor: SystemActor | None = None


def publish(session: Session, store: BlobStore, upload: Upload) -> GearVersion:
    """Run every publish step; returns the committed, pending version."""
    archive = read_upload(upload.data)
    manifest = archive.manifest
    publisher = authorize_namespace(session, upload, manifest)
    gear = find_gear(session, manifest)
    check_new_version(session, gear, manifest)
    check_kind_unchanged(gear, manifest)
    store_blob(store, archive.sha256, upload.data)
    return insert_version(session, publisher, gear, archive, upload.user, upload.actor)


def read_upload(data: bytes) -> GearArchive:
    """Archive safety checks and manifest validation, through the SDK's safe reader."""
    if not data:
        raise MarketplaceError(400, "missing_file", "the upload is empty; send the .gear file "
                               "as the multipart field 'file'")
    try:
        return read_archive(data)
    except ManifestError as exc:
        raise _manifest_error(exc) from None
    except ArchiveError as exc:
        problems = getattr(exc, "problems", None)
        if problems:
            raise _manifest_error(exc) from None
        detail = {"path": exc.member or "$", "message": exc.message, "code": exc.code}
        raise MarketplaceError(400, "invalid_archive", f"the archive was refused: {exc.message}",
                               [detail]) from None


def _manifest_error(exc: ManifestError | ArchiveError) -> MarketplaceError:
    problems = getattr(exc, "problems", [])
    n = len(problems)
    return MarketplaceError(
        422, "invalid_manifest",
        f"gear.json has {n} problem{'s' if n != 1 else ''}; fix each one listed in details",
        [p.to_dict() for p in problems],
    )


def authorize_namespace(session: Session, upload: Upload, manifest: Manifest) -> Publisher:
    """The token must hold ``publish:<publisher>`` and its user must be a member."""
    if manifest.publisher in RESERVED_NAMES:
        # No publisher can hold such a name; say so instead of a generic "forbidden".
        raise MarketplaceError(
            422, "reserved_name",
            f"'{manifest.publisher}' is a reserved name and cannot be a publisher namespace",
            [{"path": "$.name", "message": "reserved publisher name", "code": "reserved_name"}],
        )
    publisher = session.scalar(select(Publisher).where(Publisher.name == manifest.publisher))
    allowed = publisher is not None and (
        token_allows(upload.token, f"publish:{manifest.publisher}") if upload.token else False
    )
    if not allowed or publisher is None:
        raise MarketplaceError(
            403, "forbidden",
            f"you may not publish into the namespace '{manifest.publisher}'; use a token with "
            f"the scope publish:{manifest.publisher} from a member of that publisher",
        )
    return publisher


def find_gear(session: Session, manifest: Manifest) -> Gear | None:
    return session.scalar(select(Gear).where(Gear.name == manifest.name))


def check_new_version(session: Session, gear: Gear | None, manifest: Manifest) -> None:
    """Versions are immutable forever: the same name and semver precedence never takes
    new bytes. Build metadata does not count (``1.0.0+build.2`` *is* ``1.0.0`` to every
    range), so it cannot smuggle a second archive in; the unique index on
    ``(gear_id, precedence)`` decides races this read cannot see."""
    if gear is None:
        return
    existing = session.scalar(
        select(GearVersion.version).where(
            GearVersion.gear_id == gear.id,
            GearVersion.precedence == precedence_key(str(manifest.version)),
        )
    )
    if existing is not None:
        raise _version_exists(manifest, existing)


def _version_exists(manifest: Manifest, existing: str | None = None) -> MarketplaceError:
    same = "" if existing in (None, str(manifest.version)) else (
        f" (as {existing}: build metadata does not make another version)")
    return MarketplaceError(
        409, "version_exists",
        f"{manifest.name} {manifest.version} has already been published{same}; versions "
        "are immutable (even after a yank): bump the version in gear.json",
    )


def check_kind_unchanged(gear: Gear | None, manifest: Manifest) -> None:
    if gear is not None and gear.kind != manifest.kind:
        raise MarketplaceError(
            422, "kind_changed",
            f"{gear.name} is a {gear.kind}; a new version cannot turn it into a {manifest.kind}",
            [{"path": "$.kind", "message": f"must stay '{gear.kind}'", "code": "kind_changed"}],
        )


def store_blob(store: BlobStore, sha256: str, data: bytes) -> None:
    """Write the archive and read it back before any row refers to it."""
    try:
        store.put(sha256, data)
        if not store.verify(sha256):
            raise StorageError("the stored archive did not read back with its sha256")
    except StorageError as exc:
        log.warning("publish: storing %s failed: %s", sha256, exc.message)
        raise MarketplaceError(
            503, "storage_unavailable", f"the archive could not be stored, nothing was "
            f"published: {exc.public_message}; try again later",
        ) from None


def insert_version(
    session: Session, publisher: Publisher, gear: Gear | None, archive: GearArchive, user: User,
    actor: SystemActor | None = None,
) -> GearVersion:
    """Create the gear (first version) and the pending version row, with an audit entry.

    The unique constraints decide races: when a concurrent publish created the
    same new gear first, the insert is retried once against that gear; when it
    published the same version, this one gets ``version_exists``.
    """
    manifest = archive.manifest
    for attempt in (1, 2):
        try:
            return _insert(session, publisher, gear, archive, user, actor)
        except IntegrityError:
            session.rollback()
            gear_was_new = gear is None
            gear = find_gear(session, manifest)
            if attempt == 2 or not gear_was_new or gear is None:
                break
            check_new_version(session, gear, manifest)
            check_kind_unchanged(gear, manifest)
    raise _version_exists(manifest)


def _insert(
    session: Session, publisher: Publisher, gear: Gear | None, archive: GearArchive, user: User,
    actor: SystemActor | None,
) -> GearVersion:
    manifest = archive.manifest
    if gear is None:
        gear = Gear(
            publisher_id=publisher.id, name=manifest.name, kind=manifest.kind,
            title=manifest.title, summary=manifest.summary, categories=list(manifest.categories),
        )
        session.add(gear)
        session.flush()
    version = GearVersion(
        gear_id=gear.id, version=str(manifest.version), sha256=archive.sha256,
        size=archive.size, manifest=manifest.to_dict(), status=VersionStatus.pending,
        uploaded_by_id=user.id,
    )
    session.add(version)
    session.flush()
    audit.record(session, actor or user, "version.publish", "version",
                 f"{manifest.name}@{manifest.version}", after=version_state(version))
    enqueue_vetting(session, version)
    try:
        session.commit()
    except (OperationalError, InterfaceError):
        found = committed_version(session, manifest.name, str(manifest.version), archive.sha256)
        if found is None:
            raise  # verified: nothing was published (the handler says so, busy or down)
        return found
    return version


def committed_version(session: Session, name: str, version: str,
                      sha256: str) -> GearVersion | None:
    """The outcome of a commit whose connection died: the server may have committed
    before the answer was lost. Looks for the version row on a fresh connection: the
    version when it is there, ``None`` when it is verifiably not, and ``503`` "unknown"
    when the database cannot be asked — never "nothing was published" unchecked."""
    try:
        session.rollback()
    except (OperationalError, InterfaceError):
        session.invalidate()
    row = _find_version(session, name, version, sha256)
    if row is _UNKNOWN:
        raise MarketplaceError(
            503, "database_unavailable", f"the connection to the database was lost while "
            f"saving {name} {version}, and it cannot be asked yet whether it was saved; check "
            f"with `gears status {name} {version}` before publishing again",
            headers={"Retry-After": "2"}) from None
    session.info.pop(COMMITTING, None)  # the outcome is known now
    return cast("GearVersion | None", row)


def answer_for(session: Session, version: GearVersion,
               render: Callable[[GearVersion], dict[str, Any]]) -> dict[str, Any]:
    """``render(version)`` for a committed version, re-reading the row on a fresh
    connection when the one the commit used dies while the answer is built: the
    version is published, so the answer must say so."""
    name, number, sha256 = version.gear.name, version.version, version.sha256
    for _attempt in range(OUTCOME_ATTEMPTS):
        try:
            return render(version)
        except (OperationalError, InterfaceError):
            try:
                session.rollback()
            except (OperationalError, InterfaceError):
                session.invalidate()
            found = _find_version(session, name, number, sha256)
            if isinstance(found, GearVersion):
                version = found
    raise MarketplaceError(
        503, "database_unavailable", f"{name} {number} was published, but the connection to "
        f"the database was lost before the answer was complete; `gears status {name} "
        f"{number}` shows it", headers={"Retry-After": "2"})


_UNKNOWN: Any = object()
#: Attempts (0.2 s apart) to ask whether a commit whose connection died was made.
OUTCOME_ATTEMPTS = 3


def _find_version(session: Session, name: str, version: str, sha256: str) -> Any:
    """The version row, ``None`` when there is none, or ``_UNKNOWN`` when the database
    cannot be asked: each attempt on a fresh connection (the pool drops dead ones)."""
    query = select(GearVersion).join(Gear).where(
        Gear.name == name, GearVersion.version == version, GearVersion.sha256 == sha256)
    for attempt in range(OUTCOME_ATTEMPTS):
        try:
            return session.scalar(query)
        except (OperationalError, InterfaceError):
            try:
                session.rollback()
            except (OperationalError, InterfaceError):
                session.invalidate()
            if attempt + 1 < OUTCOME_ATTEMPTS:
                time.sleep(0.2)
    return _UNKNOWN


def enqueue_vetting(session: Session, version: GearVersion) -> None:
    """Vetting runs off the request path: publishing only queues it, in the same
    transaction as the version, so no version is ever left without a queued run."""
    # vetting depends on the registry (its jobs read versions, approval changes their
    # state): the registry reaches up to it only here, when the call runs
    from marketplace.vetting.jobs import enqueue

    enqueue(session, version)


def version_state(version: GearVersion) -> dict[str, Any]:
    return {
        "status": version.status.value,
        "yanked": version.yanked,
        "quarantined": version.quarantined,
        "sha256": version.sha256,
        "signed": version.signature is not None,
    }
