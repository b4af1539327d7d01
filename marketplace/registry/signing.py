"""The registry's Ed25519 signing keys, and the signatures they make on approval.

Keys live in ``<instance>/signing/``: ``<key_id>.key`` (PKCS#8 PEM, mode
0600) for the current key, ``<key_id>.pub`` (raw public key, base64) for it
and for every retired key, and ``current`` naming the key that signs.
Rotation writes a new key and moves ``current`` to it; the retired private
key is deleted (it must never sign again) while its public key stays, so
every signature made before the rotation still verifies.

Every replica must see the same directory (a shared volume, or the files
distributed by the deployment); a replica that finds no key creates one, so
the first start needs no manual step. Creation is race-safe: ``current`` is
created with ``O_EXCL`` and the loser of a race discards its key.
"""

from __future__ import annotations

import base64
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from flask import Flask, current_app
from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gears_sdk.archive import read_archive
from gears_sdk.errors import ArchiveError
from marketplace.db import Base, UTCDateTime, utcnow
from marketplace.errors import MarketplaceError
from marketplace.runtime.signatures import ALGORITHM, SignedManifest, canonical_json, key_id
from marketplace.storage import StorageError

KEY_DIR = "signing"
CURRENT = "current"

log = logging.getLogger(__name__)


class VersionSignature(Base):
    """The registry's signature over an approved version and the file hashes it covers."""

    __tablename__ = "version_signatures"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("gear_versions.id", ondelete="CASCADE"), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16))
    algorithm: Mapped[str] = mapped_column(String(16), default=ALGORITHM)
    signature: Mapped[str] = mapped_column(Text)
    files: Mapped[dict[str, str]] = mapped_column(JSON)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class KeyRing:
    """The signing keys in one directory."""

    def __init__(self, directory: Path | str):
        self.dir = Path(directory)

    # -- reading --------------------------------------------------------------

    def current_id(self) -> str | None:
        try:
            return (self.dir / CURRENT).read_text().strip() or None
        except FileNotFoundError:
            return None

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every key that ever signed here, current and retired, by id."""
        keys: dict[str, Ed25519PublicKey] = {}
        if not self.dir.is_dir():
            return keys
        for path in sorted(self.dir.glob("*.pub")):
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(path.read_text().strip()))
            keys[key_id(key)] = key
        return keys

    def keys_json(self) -> dict[str, Any]:
        """The body of ``GET /api/v1/keys``; the current key first."""
        current = self.current_id()
        entries = [{"key_id": kid, "algorithm": ALGORITHM, "current": kid == current,
                    "public_key": base64.b64encode(
                        k.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()}
                   for kid, k in self.public_keys().items()]
        entries.sort(key=lambda e: not e["current"])
        return {"keys": entries}

    def _private(self, kid: str) -> Ed25519PrivateKey:
        key = load_pem_private_key((self.dir / f"{kid}.key").read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise MarketplaceError(500, "signing_key_invalid", f"{kid}.key is not Ed25519")
        return key

    # -- writing --------------------------------------------------------------

    def _write_key(self) -> tuple[str, Ed25519PrivateKey]:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        private = Ed25519PrivateKey.generate()
        public = private.public_key()
        kid = key_id(public)
        fd = os.open(self.dir / f"{kid}.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
        raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        (self.dir / f"{kid}.pub").write_text(base64.b64encode(raw).decode() + "\n")
        return kid, private

    def ensure(self) -> tuple[str, bool]:
        """The current key id, creating a key when there is none; ``(id, created)``."""
        kid = self.current_id()
        if kid is not None:
            return kid, False
        new, _ = self._write_key()
        try:
            fd = os.open(self.dir / CURRENT, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            # another process won: its key signs, ours never did
            (self.dir / f"{new}.key").unlink(missing_ok=True)
            (self.dir / f"{new}.pub").unlink(missing_ok=True)
            return self.current_id() or new, False
        with os.fdopen(fd, "w") as fh:
            fh.write(new + "\n")
        return new, True

    def rotate(self) -> tuple[str, str | None]:
        """A new current key; the old private key is deleted, its public key kept.
        Returns ``(new id, old id)``."""
        old = self.current_id()
        new, _ = self._write_key()
        tmp = self.dir / f".{CURRENT}.{os.getpid()}"
        tmp.write_text(new + "\n")
        os.replace(tmp, self.dir / CURRENT)
        if old and old != new:
            (self.dir / f"{old}.key").unlink(missing_ok=True)
        return new, old

    def sign(self, message: bytes) -> tuple[str, str]:
        """``(signature base64, key id)`` with the current key (created if missing)."""
        kid, _ = self.ensure()
        signature = self._private(kid).sign(message)
        return base64.b64encode(signature).decode(), kid


def key_dir(app: Flask | None = None) -> Path:
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    return Path(app.config["SIGNING_KEY_DIR"] or Path(app.config["INSTANCE_PATH"]) / KEY_DIR)


def keyring(app: Flask | None = None) -> KeyRing:
    return KeyRing(key_dir(app))


def sign_manifest(ring: KeyRing, name: str, version: str, sha256: str,
                  files: dict[str, str]) -> SignedManifest:
    """Sign ``{name, version, sha256, files}`` (canonical JSON) with the current key."""
    unsigned = SignedManifest(name=name, version=version, sha256=sha256, files=dict(files))
    signature, kid = ring.sign(unsigned.message())
    return SignedManifest(name=name, version=version, sha256=sha256, files=dict(files),
                          signature=signature, key_id=kid)


def sign_document(ring: KeyRing, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` plus ``signature`` and ``key_id`` over its canonical JSON."""
    signature, kid = ring.sign(canonical_json(document))
    return {**document, "signature": signature, "key_id": kid}


def sign_version(session: Any, version: Any, ring: KeyRing, store: Any) -> VersionSignature:
    """Sign an approved version: read its archive back from storage (so the hashes are
    of the bytes that will be served), then record the signature in ``session``.

    The caller commits, in the same transaction as the approval and its audit entry.
    """
    try:
        archive = read_archive(store.read(version.sha256))
    except (StorageError, OSError, ArchiveError) as exc:
        log.warning("signing %s: cannot read the archive: %s", version.sha256, exc)
        reason = exc.public_message if isinstance(exc, StorageError) else \
            "the stored archive cannot be read"
        raise MarketplaceError(503, "storage_unavailable", f"cannot read the archive to sign "
                               f"it: {reason}; nothing was changed, try again") from None
    if archive.sha256 != version.sha256:
        raise MarketplaceError(500, "blob_mismatch", "the stored archive does not match the "
                               "version's sha256; it was not signed")
    signed = sign_manifest(ring, version.gear.name, version.version, version.sha256,
                           archive.file_hashes())
    row = session.get(VersionSignature, version.id) or VersionSignature(version_id=version.id)
    row.key_id, row.algorithm = signed.key_id, ALGORITHM
    row.signature, row.files, row.signed_at = signed.signature, signed.files, utcnow()
    session.add(row)
    version.signature = signed.signature
    return row
