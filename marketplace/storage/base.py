"""The blob store interface shared by every backend."""

from __future__ import annotations

import abc
import hashlib
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import IO, BinaryIO
from urllib.parse import quote

from .errors import BlobNotFound, IntegrityError, InvalidDigest

#: Blobs are gear archives; the registry refuses uploads larger than this, and
#: backends use it to decide that a blob may be spooled to disk before upload.
MAX_BLOB_SIZE = 16 * 1024 * 1024

#: Size of the pieces in which blobs are copied and hashed.
CHUNK_SIZE = 1024 * 1024

_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def validate_sha256(sha256: object) -> str:
    """Return ``sha256`` if it is 64 lowercase hex digits, else raise :class:`InvalidDigest`.

    Every backend calls this before building a path or an object key from a digest.
    """
    if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
        shown = repr(sha256)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        raise InvalidDigest(
            f"invalid sha256 {shown}: expected 64 lowercase hexadecimal digits"
        )
    return sha256


@dataclass(frozen=True)
class BlobInfo:
    """One stored blob, as listed by :meth:`BlobStore.iter_blobs`.

    ``modified`` is timezone-aware UTC; garbage collection uses it to leave
    recently written blobs alone while their database rows are still being
    committed.
    """

    sha256: str
    size: int
    modified: datetime


def content_disposition(filename: str) -> str:
    """An ``attachment`` Content-Disposition value for ``filename`` (RFC 6266).

    The plain ``filename=`` part is reduced to safe ASCII for old clients; the
    exact name travels in ``filename*``.
    """
    fallback = "".join(
        ch if (ch.isascii() and ch.isprintable() and ch not in '"\\;') else "_"
        for ch in filename
    ) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def hash_into(data: bytes | IO[bytes], sink: IO[bytes] | None = None) -> tuple[str, int]:
    """Hash ``data`` (copying it into ``sink`` when given); return ``(sha256, size)``."""
    digest = hashlib.sha256()
    size = 0
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        digest.update(view)
        size = view.nbytes
        if sink is not None:
            sink.write(view)
        return digest.hexdigest(), size
    while chunk := data.read(CHUNK_SIZE):
        digest.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return digest.hexdigest(), size


def check_digest(expected: str, actual: str, size: int) -> None:
    """Raise :class:`IntegrityError` unless the bytes hashed to ``expected``."""
    if actual != expected:
        raise IntegrityError(
            f"the {size} bytes received hash to sha256 {actual}, not the claimed {expected}; "
            "the upload was corrupted or the digest is wrong, so nothing was stored"
        )


def spooled() -> tempfile.SpooledTemporaryFile[bytes]:
    """A temporary file that stays in memory for small blobs and spills to disk for big ones."""
    return tempfile.SpooledTemporaryFile(max_size=CHUNK_SIZE * 4)


class BlobStore(abc.ABC):
    """Content-addressed blob storage: every blob is stored under its own sha256.

    Contract shared by all backends:

    * every ``sha256`` argument is validated first (:func:`validate_sha256`);
    * ``put`` never makes a partial or wrong blob visible: the bytes are hashed
      while they are written, a mismatch raises :class:`IntegrityError` and
      leaves nothing behind, and putting a blob that is already there is fine;
    * reads of a missing blob raise :class:`BlobNotFound`;
    * an unreachable or misconfigured backend raises :class:`StorageUnavailable`
      (``code == "storage_unavailable"``) with a message saying what to check.
    """

    #: Where the blobs live, for logs and ``marketplace`` status output.
    description: str

    @abc.abstractmethod
    def put(self, sha256: str, data: bytes | IO[bytes]) -> None:
        """Store ``data`` under ``sha256`` atomically, verifying the hash while writing."""

    @abc.abstractmethod
    def exists(self, sha256: str) -> bool:
        """Whether a blob is stored under ``sha256``."""

    @abc.abstractmethod
    def open(self, sha256: str) -> BinaryIO:
        """A stream of the blob's bytes; the caller closes it. Raises :class:`BlobNotFound`."""

    @abc.abstractmethod
    def size(self, sha256: str) -> int:
        """The blob's size in bytes. Raises :class:`BlobNotFound`."""

    @abc.abstractmethod
    def delete(self, sha256: str) -> None:
        """Remove the blob; removing a missing blob is not an error."""

    @abc.abstractmethod
    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob, in no particular order (used by garbage collection)."""

    @abc.abstractmethod
    def check(self) -> None:
        """Raise :class:`StorageUnavailable` unless the backend is reachable and usable."""

    @abc.abstractmethod
    def ensure(self) -> None:
        """Create what the backend needs (directory, bucket) if it is missing; idempotent."""

    def read(self, sha256: str) -> bytes:
        """The blob's bytes. Raises :class:`BlobNotFound`."""
        with self.open(sha256) as stream:
            return stream.read()

    def verify(self, sha256: str) -> bool:
        """Re-read the stored blob and check that it still hashes to ``sha256``.

        Returns ``False`` when the blob is missing or its bytes changed; the
        registry calls this after ``put`` and before committing the version row.
        """
        validate_sha256(sha256)
        try:
            with self.open(sha256) as stream:
                actual, _ = hash_into(stream)
        except BlobNotFound:
            return False
        return actual == sha256

    def presigned_url(
        self, sha256: str, expires: int = 300, filename: str | None = None
    ) -> str | None:
        """A time-limited URL a client can download the blob from directly, or ``None``.

        Backends without such URLs return ``None`` and the registry streams the
        blob itself.
        """
        validate_sha256(sha256)
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"

