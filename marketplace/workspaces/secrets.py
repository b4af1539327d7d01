"""Secret config values at rest: encrypted, and decrypted only for the runtime.

Config fields marked ``"format": "secret"`` (or ``"password"``) in a gear's
``config_schema`` are split from the rest of the config and stored as one
Fernet token (AES-128-CBC + HMAC-SHA256, authenticated) in
``Installation.secrets_encrypted``. The Fernet key is derived from the app's
``SECRET_KEY`` with HKDF (``info=b"gears installation secrets"``), so the
database alone is useless to a thief, and the same secret key never serves two
purposes directly. Keys listed in ``SECRET_KEY_FALLBACKS`` still decrypt
(:class:`~cryptography.fernet.MultiFernet`), so the secret key can be rotated;
values are re-encrypted with the current key the next time they are written.

The key travels with the database session: :func:`attach` (called by the
package's ``init_app``) puts a :class:`SecretBox` in the sessionmaker's
``info``, so service functions, CLI jobs and the runtime need no Flask app to
find it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.orm import Session, object_session, sessionmaker

from marketplace.errors import MarketplaceError

HKDF_INFO = b"gears installation secrets"
SESSION_INFO_KEY = "gears_secret_box"


def derive_key(secret_key: str | bytes) -> bytes:
    """The Fernet key for ``secret_key`` (url-safe base64 of 32 HKDF-SHA256 bytes)."""
    raw = secret_key.encode("utf-8") if isinstance(secret_key, str) else secret_key
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(raw)
    return base64.urlsafe_b64encode(derived)


class SecretBox:
    """Encrypts and decrypts an installation's secret values (a JSON object)."""

    def __init__(self, secret_key: str | bytes, fallbacks: Iterable[str | bytes] = ()):
        if not secret_key:
            raise ValueError("a SECRET_KEY is required to store installation secrets")
        keys = [secret_key, *[k for k in fallbacks if k]]
        self._fernet = MultiFernet([Fernet(derive_key(k)) for k in keys])

    def encrypt(self, values: dict[str, Any]) -> str | None:
        """The token for ``values``, or ``None`` when there is nothing to keep."""
        if not values:
            return None
        plain = json.dumps(values, separators=(",", ":"), sort_keys=True).encode("utf-8")
        return self._fernet.encrypt(plain).decode("ascii")

    def decrypt(self, token: str | None) -> dict[str, Any]:
        """The values in ``token`` (``{}`` for ``None``).

        Raises 500 ``secrets_unreadable`` when the token was made with another
        key: the operator changed ``SECRET_KEY`` without keeping the old one as
        a fallback, and users must enter those secrets again.
        """
        if not token:
            return {}
        try:
            data = json.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, ValueError):
            raise MarketplaceError(
                500, "secrets_unreadable",
                "stored secrets cannot be decrypted with the current SECRET_KEY; add the old "
                "key to SECRET_KEY_FALLBACKS, or enter the secrets again") from None
        return data if isinstance(data, dict) else {}


def attach(maker: sessionmaker[Session], box: SecretBox) -> None:
    """Make ``box`` reachable from every session ``maker`` creates."""
    info = dict(maker.kw.get("info") or {})
    info[SESSION_INFO_KEY] = box
    maker.configure(info=info)


def box_for(session: Session) -> SecretBox:
    """The session's :class:`SecretBox`; 500 ``secrets_unavailable`` when none is attached."""
    box = session.info.get(SESSION_INFO_KEY)
    if not isinstance(box, SecretBox):
        raise MarketplaceError(500, "secrets_unavailable",
                               "installation secrets are not configured for this database "
                               "session; build sessions from the app's database")
    return box


def installation_secrets(inst: Any, box: SecretBox | None = None) -> dict[str, Any]:
    """The decrypted secret values of ``inst`` (an ``Installation``), for the runtime only.

    Never pass the result to a serializer, a log line or an audit entry.
    """
    if box is None:
        session = object_session(inst)
        if session is None:
            raise MarketplaceError(500, "secrets_unavailable",
                                   "the installation is not attached to a session; pass a "
                                   "SecretBox explicitly")
        box = box_for(session)
    return box.decrypt(inst.secrets_encrypted)
