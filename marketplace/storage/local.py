"""Blobs in a local directory: ``root/ab/cd/<sha256>``, temporary files in ``root/.tmp``."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, BinaryIO

from .base import BlobInfo, BlobStore, check_digest, hash_into, validate_sha256
from .errors import BlobNotFound, StorageUnavailable

_HEX = frozenset("0123456789abcdef")

#: Temporary files older than this are leftovers of interrupted uploads.
STALE_TEMP_SECONDS = 3600


def _is_shard(name: str) -> bool:
    return len(name) == 2 and set(name) <= _HEX


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform lets a directory be opened.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class LocalBlobStore(BlobStore):
    """Blobs as files under ``root``, sharded two levels deep by digest prefix.

    Uploads go to a temporary file in ``root/.tmp`` (same filesystem, so the
    final ``os.replace`` is atomic), are hashed while written and fsynced
    before they are renamed into place: a reader sees the whole blob or none.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).absolute()
        self.tmp_dir = self.root / ".tmp"
        self.description = self.root.as_uri()

    # -- paths -----------------------------------------------------------

    def path_for(self, sha256: str) -> Path:
        """Where the blob ``sha256`` lives (whether or not it exists)."""
        validate_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def _unavailable(self, exc: OSError, doing: str) -> StorageUnavailable:
        where = exc.filename or self.root
        return StorageUnavailable(
            f"cannot {doing} in the blob directory {self.root}: {exc.strerror or exc} ({where}); "
            "check that it exists and is writable (`marketplace init` creates it) "
            "and that GEARS_STORAGE_URL points at it",
            public=f"the blob store cannot {doing}: {exc.strerror or 'input/output error'}",
        )

    # -- writing ---------------------------------------------------------

    def put(self, sha256: str, data: bytes | IO[bytes]) -> None:
        target = self.path_for(sha256)
        if not self.root.is_dir():
            raise StorageUnavailable(
                f"the blob directory {self.root} does not exist; run `marketplace init` "
                "or check GEARS_STORAGE_URL"
            )
        try:
            self.tmp_dir.mkdir(exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f"{sha256[:16]}-", suffix=".part",
                                            dir=self.tmp_dir)
        except OSError as exc:
            raise self._unavailable(exc, "create a temporary file")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as sink:
                actual, size = hash_into(data, sink)
                sink.flush()
                os.fsync(sink.fileno())
            check_digest(sha256, actual, size)
            # mkstemp creates 0600; blobs are read by other processes of the service.
            os.chmod(tmp, 0o644)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Replacing an existing blob is harmless (same bytes), repairs a damaged
            # one and refreshes its mtime so garbage collection treats it as new.
            os.replace(tmp, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise self._unavailable(exc, "store a blob")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def delete(self, sha256: str) -> None:
        path = self.path_for(sha256)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise self._unavailable(exc, "delete a blob")

    # -- reading ---------------------------------------------------------

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def open(self, sha256: str) -> BinaryIO:
        path = self.path_for(sha256)
        try:
            return path.open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"no blob with sha256 {sha256} in {self.description}")
        except OSError as exc:
            raise self._unavailable(exc, "read a blob")

    def size(self, sha256: str) -> int:
        path = self.path_for(sha256)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"no blob with sha256 {sha256} in {self.description}")
        except OSError as exc:
            raise self._unavailable(exc, "read a blob")

    def iter_blobs(self) -> Iterator[BlobInfo]:
        if not self.root.is_dir():
            return
        for first in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not (_is_shard(first.name) and first.is_dir(follow_symlinks=False)):
                continue
            for second in sorted(os.scandir(first.path), key=lambda e: e.name):
                if not (_is_shard(second.name) and second.is_dir(follow_symlinks=False)):
                    continue
                for entry in os.scandir(second.path):
                    name = entry.name
                    if not (
                        len(name) == 64
                        and set(name) <= _HEX
                        and name.startswith(first.name + second.name)
                        and entry.is_file(follow_symlinks=False)
                    ):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # deleted while listing
                    yield BlobInfo(name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    # -- health ----------------------------------------------------------

    def check(self) -> None:
        if not self.root.is_dir():
            raise StorageUnavailable(
                f"the blob directory {self.root} does not exist; run `marketplace init` "
                "or check GEARS_STORAGE_URL"
            )
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            raise StorageUnavailable(
                f"the blob directory {self.root} is not readable and writable by this "
                "process; fix its permissions or check GEARS_STORAGE_URL"
            )
        if self.tmp_dir.exists() and not os.access(self.tmp_dir, os.W_OK | os.X_OK):
            raise StorageUnavailable(
                f"the temporary directory {self.tmp_dir} is not writable by this process; "
                "fix its permissions"
            )
        self._probe_write()

    def _probe_write(self) -> None:
        """Write, sync and remove one small file: modes and ``os.access`` say nothing
        about a full disk, a read-only mount, or a root process."""
        probe_dir = self.tmp_dir if self.tmp_dir.is_dir() else self.root
        try:
            fd, name = tempfile.mkstemp(prefix="health-", suffix=".probe", dir=probe_dir)
        except OSError as exc:
            raise self._unavailable(exc, "write a file")
        try:
            try:
                os.write(fd, b"gears health probe\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise self._unavailable(exc, "write a file")
        finally:
            Path(name).unlink(missing_ok=True)

    def ensure(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.tmp_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise self._unavailable(exc, "create directories")
        self._remove_stale_temp_files()
        self.check()

    def _remove_stale_temp_files(self) -> None:
        # An interrupted upload leaves its temporary file behind; it is never visible
        # as a blob, but it takes space.
        cutoff = time.time() - STALE_TEMP_SECONDS
        for entry in os.scandir(self.tmp_dir):
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
            except OSError:
                continue
