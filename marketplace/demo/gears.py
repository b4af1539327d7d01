"""Demo gears: every example gear built, published, vetted and approved through the
registry's own paths (the publish steps, the vetting queue, the signed review)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from gears_sdk.archive import build_archive_bytes
from gears_sdk.manifest import load_manifest
from marketplace.accounts import service, tokens
from marketplace.blobs import get_blob_store
from marketplace.models import Gear, GearVersion, Role, User, VersionStatus
from marketplace.registry import publish as publishing
from marketplace.registry import states
from marketplace.registry.signing import keyring, sign_version

#: The example gears ship beside the package in a source checkout.
EXAMPLES = Path(__file__).resolve().parents[2] / "example_gears"

Say = Callable[[str], None]


def example_dirs() -> list[Path]:
    """Every example gear directory, in name order."""
    if not EXAMPLES.is_dir():
        return []
    return sorted(p for p in EXAMPLES.iterdir() if (p / "gear.json").is_file())


def _version(session: Session, name: str, version: str) -> GearVersion | None:
    return session.scalar(select(GearVersion).join(Gear, GearVersion.gear_id == Gear.id)
                          .where(Gear.name == name, GearVersion.version == version))


def publish_examples(app: Flask, session: Session, developer: str, say: Say) -> list[GearVersion]:
    """Publish the example gears the registry does not have yet; returns the new versions."""
    dev = service.require_user(session, developer)
    new: list[GearVersion] = []
    token = None
    for gear_dir in example_dirs():
        manifest = load_manifest(gear_dir)
        if _version(session, manifest.name, str(manifest.version)) is not None:
            continue
        if token is None:
            _, token = tokens.create_token(session, dev, [f"publish:{manifest.publisher}"],
                                           name="demo-seed", expires_days=1)
            session.commit()
        data, _ = build_archive_bytes(gear_dir)
        upload = publishing.Upload(data=data, user=dev, token=token)
        new.append(publishing.publish(session, get_blob_store(app), upload))
        say(f"published {manifest.name} {manifest.version}")
    if token is not None:
        tokens.revoke_token(session, token)
        session.commit()
    return new


def approve_pending(app: Flask, session: Session, say: Say) -> None:
    """Vet every queued upload, then approve (and sign) what is still pending, as the admin
    would after reading the findings."""
    from marketplace.vetting.worker import run_worker

    ran = run_worker(app, once=True)
    if ran:
        say(f"vetted {ran} version(s)")
    admin = session.scalar(select(User).where(User.role == Role.admin).order_by(User.id))
    if admin is None:
        raise RuntimeError("no admin exists; run `marketplace init` first")
    ring, store = keyring(app), get_blob_store(app)
    pending = session.scalars(select(GearVersion).where(
        GearVersion.status == VersionStatus.pending)).all()
    for version in pending:
        if version.gear.publisher.name != "acme":
            continue
        states.review(session, admin, version, approve=True,
                      reason="Demo gear: reviewed with its findings.",
                      sign=lambda s, v: sign_version(s, v, ring, store))
        say(f"approved {version.gear.name} {version.version}")
