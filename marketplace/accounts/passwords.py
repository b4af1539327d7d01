"""Password hashing with Argon2id (argon2-cffi's recommended parameters).

Hashes carry their own parameters, so when the defaults are raised old hashes
still verify and are upgraded on the next successful login (:func:`needs_rehash`).
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()

#: Verified against when a user is unknown or has no password, so that a
#: failed login takes as long whether or not the account exists.
_DUMMY_HASH = _hasher.hash("not a real password; used to even out timing")

MIN_PASSWORD_LENGTH = 8


def hash_password(password: str) -> str:
    """The Argon2id hash of ``password`` to store."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``.

    ``None`` never matches, but takes as long as a real check.
    """
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Whether the hash was made with weaker parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True
