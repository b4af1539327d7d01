"""Demo gears: every example gear built, published, vetted and approved through the
registry's own paths (the publish steps, the vetting queue, the signed review).

The seed acts only on its **own** archives: the example gears built here
(reproducibly, so the same checkout always gives the same sha256) and
published by the seed itself (its ``version.publish`` audit entry names the
``demo-seed`` actor). Anything else in the namespace — a developer's upload
following the README, a version an admin yanked or quarantined — is never
vetted, approved nor signed by it, however often ``make run`` runs. Every
change it makes is audited as ``demo-seed``, never as a person.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from gears_sdk.archive import build_archive_bytes
from marketplace.accounts import service, tokens
from marketplace.audit import SystemActor
from marketplace.blobs import get_blob_store
from marketplace.errors import MarketplaceError
from marketplace.models import AuditEntry, Gear, GearVersion, VersionStatus
from marketplace.registry import publish as publishing
from marketplace.registry import states
from marketplace.registry.signing import keyring, sign_version
from marketplace.vetting.jobs import claim, run_claim
from marketplace.vetting.worker import make_approver, sandbox_options

#: The example gears ship beside the package in a source checkout.
EXAMPLES = Path(__file__).resolve().parents[2] / "example_gears"
SEED = SystemActor.seed

Say = Callable[[str], None]


@dataclass(frozen=True)
class Example:
    """One example gear as the seed builds it: the archive and its identity."""

    name: str
    version: str
    publisher: str
    data: bytes
    sha256: str


def example_dirs() -> list[Path]:
    """Every example gear directory, in name order."""
    if not EXAMPLES.is_dir():
        return []
    return sorted(p for p in EXAMPLES.iterdir() if (p / "gear.json").is_file())


def build_examples() -> list[Example]:
    """Every example gear built into its (reproducible) archive."""
    out = []
    for gear_dir in example_dirs():
        data, manifest = build_archive_bytes(gear_dir)
        out.append(Example(manifest.name, str(manifest.version), manifest.publisher, data,
                           hashlib.sha256(data).hexdigest()))
    return out


def _version(session: Session, name: str, version: str) -> GearVersion | None:
    return session.scalar(select(GearVersion).join(Gear, GearVersion.gear_id == Gear.id)
                          .where(Gear.name == name, GearVersion.version == version))


def publish_examples(app: Flask, session: Session, developer: str, say: Say,
                     examples: list[Example]) -> list[GearVersion]:
    """Publish the example gears the registry does not have yet (uploaded as the demo
    developer, audited as the seed); returns the new versions. A name and version the
    registry already holds is left alone, whoever published it."""
    dev = service.require_user(session, developer)
    new: list[GearVersion] = []
    token = None
    for ex in examples:
        existing = _version(session, ex.name, ex.version)
        if existing is not None:
            if existing.sha256 != ex.sha256:
                say(f"left {ex.name} {ex.version} alone: it is not the demo's archive")
            continue
        if token is None:
            _, token = tokens.create_token(session, dev, [f"publish:{ex.publisher}"],
                                           name="demo-seed", expires_days=1, actor=SEED)
            session.commit()
        upload = publishing.Upload(data=ex.data, user=dev, token=token, actor=SEED)
        try:
            new.append(publishing.publish(session, get_blob_store(app), upload))
        except MarketplaceError as exc:
            session.rollback()
            say(f"did not publish {ex.name} {ex.version}: {exc.message}")
            continue
        say(f"published {ex.name} {ex.version}")
    if token is not None:
        tokens.revoke_token(session, token, actor=SEED)
        session.commit()
    return new


def own_pending(session: Session, examples: list[Example]) -> list[GearVersion]:
    """The seed's own versions still awaiting review: an example's exact name, version
    and sha256, published by the seed, pending, neither yanked nor quarantined."""
    if not examples:
        return []
    ours = or_(*(and_(Gear.name == ex.name, GearVersion.version == ex.version,
                      GearVersion.sha256 == ex.sha256) for ex in examples))
    published_by_seed = exists().where(
        AuditEntry.action == "version.publish", AuditEntry.target_type == "version",
        AuditEntry.target_id == Gear.name + "@" + GearVersion.version,
        AuditEntry.actor_system == SEED.value)
    return list(session.scalars(
        select(GearVersion).join(Gear, GearVersion.gear_id == Gear.id)
        .where(ours, published_by_seed, GearVersion.status == VersionStatus.pending,
               GearVersion.yanked.is_(False), GearVersion.quarantined.is_(False))
        .order_by(GearVersion.id)))


def vet_own(app: Flask, session: Session, versions: list[GearVersion]) -> int:
    """Run the vetting queue for the seed's own versions only; returns how many ran."""
    ids = [v.id for v in versions]
    ran = 0
    while ids:
        got = claim(session, "demo-seed", versions=ids)
        if got is None:
            break
        run_claim(session, get_blob_store(app), got, sandbox_options(app), make_approver(app))
        ran += 1
    return ran


def approve_own(app: Flask, session: Session, say: Say, examples: list[Example]) -> None:
    """Vet the seed's own pending versions, then approve and sign them, as the seed."""
    pending = own_pending(session, examples)
    ran = vet_own(app, session, pending)
    if ran:
        say(f"vetted {ran} version(s)")
    ring, store = keyring(app), get_blob_store(app)
    for version in own_pending(session, examples):
        try:
            states.review(session, SEED, version, approve=True,
                          reason="Demo gear: reviewed with its findings.",
                          sign=lambda s, v: sign_version(s, v, ring, store),
                          only_if={"sha256": version.sha256, "yanked": False,
                                   "quarantined": False})
        except MarketplaceError as exc:  # someone acted on it meanwhile: theirs to decide
            session.rollback()
            say(f"left {version.gear.name} {version.version} alone: {exc.message}")
            continue
        say(f"approved {version.gear.name} {version.version}")
