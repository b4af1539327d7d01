"""Storage errors: one base class with a stable ``code`` and an actionable message."""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every blob storage failure.

    ``code`` is a stable machine-readable string (API error bodies and logs use
    it); ``message`` tells an operator what went wrong and what to do about it,
    with the deployment's details (directories, endpoints, buckets), so it goes
    to logs and the operator CLI only. ``public_message`` is what a client may
    read: what failed, never where.
    """

    default_code = "storage_error"
    default_public = "the blob store failed"

    def __init__(self, message: str, *, code: str | None = None,
                 public: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.public = public

    @property
    def public_message(self) -> str:
        """The message for clients: no host paths, endpoints or bucket names."""
        return self.public or self.default_public

    def __str__(self) -> str:
        return self.message


class StorageUnavailable(StorageError):
    """The backend cannot be reached or is misconfigured (endpoint, bucket, credentials)."""

    default_code = "storage_unavailable"
    default_public = "the blob store is unavailable"


class BlobNotFound(StorageError):
    """No blob is stored under the requested sha256."""

    default_code = "not_found"
    default_public = "the blob is not in the store"


class IntegrityError(StorageError):
    """The bytes do not hash to the sha256 they were stored or claimed under."""

    default_code = "integrity_error"
    default_public = "the stored bytes did not match their sha256"


class InvalidStorageURL(StorageError):
    """A storage URL that names no supported backend."""

    default_code = "invalid_storage_url"


class InvalidDigest(StorageError, ValueError):
    """A sha256 argument that is not 64 lowercase hex digits.

    It is also a ``ValueError``: a malformed digest is a caller's mistake, and
    refusing it early is what keeps names like ``../../etc/passwd`` away from
    the filesystem and from object keys.
    """

    default_code = "invalid_sha256"
