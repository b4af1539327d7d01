"""Registry signatures over gears, checked by the runtime every time it loads one.

The registry signs, on approval, a small document naming exactly what it
approved::

    {"name": "acme/rfm-score", "version": "1.2.0", "sha256": "<archive>",
     "files": {"gear.json": "<sha256>", "rfm_score/__init__.py": "<sha256>", ...}}

encoded canonically (:func:`canonical_json`: sorted keys, no spaces, UTF-8),
with its Ed25519 key. Signing the per-file hashes, not only the archive's
digest, is what lets the runtime re-check an *unpacked* cache entry at every
load: a file changed, added or removed after unpacking no longer matches a
signed hash, and a forged list of hashes no longer matches the signature.

Keys are named by their id, the first 16 hex digits of the sha256 of the raw
32-byte public key; the runtime only trusts ids it was given (from
``GET /api/v1/keys`` or its configuration), so an unknown key is refused
rather than fetched.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from marketplace.runtime.loader import LoaderError

if TYPE_CHECKING:
    from marketplace.runtime.loader import GearCache

ALGORITHM = "ed25519"
PublicKeys = Mapping[str, Ed25519PublicKey]


def canonical_json(value: Any) -> bytes:
    """The one byte encoding that is signed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the sha256 of the raw public key."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_from_b64(text: str) -> Ed25519PublicKey:
    """A public key from its base64 raw form (as ``GET /api/v1/keys`` serves it)."""
    try:
        raw = base64.b64decode(text, validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error) as exc:
        raise LoaderError(f"not an Ed25519 public key: {exc}", code="bad_key") from None


def public_keys_from_json(document: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """``{key_id: key}`` from a ``GET /api/v1/keys`` body; each id is recomputed, so a
    document cannot claim a key under another key's id."""
    keys: dict[str, Ed25519PublicKey] = {}
    for entry in document.get("keys") or []:
        if entry.get("algorithm") != ALGORITHM:
            continue
        key = public_key_from_b64(str(entry.get("public_key", "")))
        if key_id(key) != entry.get("key_id"):
            raise LoaderError(f"key {entry.get('key_id')!r} does not match its public key",
                              code="bad_key")
        keys[key_id(key)] = key
    return keys


def verify_bytes(message: bytes, signature_b64: str | None, kid: str | None,
                 public_keys: PublicKeys, *, what: str) -> None:
    """Check an Ed25519 signature; ``LoaderError`` ``unsigned``, ``unknown_key`` or
    ``bad_signature`` otherwise."""
    if not signature_b64 or not kid:
        raise LoaderError(f"{what} is not signed", code="unsigned")
    key = public_keys.get(kid)
    if key is None:
        raise LoaderError(f"{what} is signed with key {kid}, which is not trusted here",
                          code="unknown_key",
                          hint="fetch the registry's keys (GET /api/v1/keys) or check the "
                               "registry this runtime talks to")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, message)
    except (InvalidSignature, ValueError, binascii.Error):
        raise LoaderError(f"the signature of {what} is not valid for key {kid}",
                          code="bad_signature") from None


@dataclass(frozen=True)
class SignedManifest:
    """What the registry approved and signed, with the signature and the signing key's id."""

    name: str
    version: str
    sha256: str
    files: dict[str, str] = field(default_factory=dict)
    signature: str | None = None
    key_id: str | None = None

    def payload(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256,
                "files": dict(self.files)}

    def message(self) -> bytes:
        return canonical_json(self.payload())

    @classmethod
    def from_version_json(cls, body: Mapping[str, Any]) -> SignedManifest:
        """From a version as ``GET /api/v1/gears/<p>/<n>/<v>`` returns it."""
        return cls(name=str(body["name"]), version=str(body["version"]),
                   sha256=str(body["sha256"]), files=dict(body.get("files") or {}),
                   signature=body.get("signature"), key_id=body.get("key_id"))

    def verify(self, public_keys: PublicKeys) -> None:
        """Raise ``LoaderError`` unless the signature is valid under a trusted key."""
        if not self.files:
            raise LoaderError(f"{self.name} {self.version} has no signed file list",
                              code="unsigned")
        verify_bytes(self.message(), self.signature, self.key_id, public_keys,
                     what=f"{self.name} {self.version}")


def verified_load(cache: GearCache, signed: SignedManifest, public_keys: PublicKeys) -> Path:
    """Fetch (if needed) and check a gear before a worker starts on it.

    Order: the signature first (a forged file list must not be used as the
    reference), then the unpacked tree against the *signed* per-file hashes —
    never against the cache's own marker, which lives next to the files it
    describes. Raises ``LoaderError`` (``unsigned``, ``unknown_key``,
    ``bad_signature``, ``tampered``, or a fetch error).
    """
    return cache.load(signed.name, signed.version, signed.sha256, signed=signed,
                      public_keys=public_keys)
