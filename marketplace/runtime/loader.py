"""Download, verify and unpack gears into a content-addressed, read-only cache.

Layout: ``root/<sha256>/`` holds one unpacked archive, files 0o444 and
directories 0o555, plus :data:`MARKER` (the archive's sha256, name, version
and per-file hashes as JSON). Because the directory is named by the digest
of the archive it came from, two workspaces running the same version share
it, and a new version can never overwrite an old one in place.

Why each step is the way it is:

* **The bytes are verified before anything touches the disk.** The expected
  sha256 comes from the resolver (the registry's database, later its
  signature); a fetcher is only a transport and is never trusted.
* **Unpacking goes only through the SDK's safe reader**
  (:func:`gears_sdk.archive.read_archive`), which refuses path traversal,
  links, bombs and native code. Nothing is ever installed with pip.
* **A partly unpacked gear is never used.** Unpacking happens in
  ``root/.tmp-<random>/`` on the same filesystem, the marker is written last,
  and one ``os.rename`` makes the finished directory appear. When two
  processes race, the first rename wins and the loser discards its copy.
* **A full disk fails cleanly** with ``LoaderError(code="cache_full")``: the
  temporary directory is removed and the cache keeps only complete entries.
* **Files can be re-checked at every load** (:meth:`GearCache.verify_tree`)
  against per-file hashes, so a modified cache is caught before its code runs.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urljoin, urlsplit

import requests

from gears_sdk.archive import MAX_ARCHIVE_BYTES, read_archive
from gears_sdk.errors import ArchiveError, GearsError
from marketplace.storage import BlobNotFound, StorageError

if TYPE_CHECKING:
    from marketplace.runtime.signatures import PublicKeys, SignedManifest

log = logging.getLogger(__name__)

#: Written last into every complete cache entry.
MARKER = ".gears-complete.json"
#: Leftover temporary directories older than this are removed by :meth:`GearCache.prune`.
STALE_TEMP_SECONDS = 3600
#: Redirects followed by :class:`RegistryFetcher` (the registry → a presigned URL).
MAX_REDIRECTS = 5
_CHUNK = 64 * 1024
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class LoaderError(GearsError):
    """A gear could not be fetched, verified or unpacked; ``code`` says which step failed.

    Codes: ``invalid_digest``, ``not_found``, ``download_failed``,
    ``registry_unavailable``, ``too_large``, ``sha256_mismatch``,
    ``invalid_archive``, ``manifest_mismatch``, ``cache_full``, ``cache_error``,
    ``tampered``; signature checks add ``unsigned``, ``unknown_key``,
    ``bad_signature`` and ``bad_key``.
    """

    code = "loader_error"

    def __init__(self, message: str, *, code: str, hint: str | None = None,
                 files: dict[str, list[str]] | None = None):
        super().__init__(message, code=code, hint=hint)
        #: For ``tampered``: ``{"modified": […], "extra": […], "missing": […]}``.
        self.files = files or {}


def _check_sha256(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
        raise LoaderError(f"invalid sha256 {sha256!r}: expected 64 lowercase hex digits",
                          code="invalid_digest")
    return sha256


# ---------------------------------------------------------------------------
# fetchers: transports only, their bytes are verified by the cache
# ---------------------------------------------------------------------------


class Fetcher(Protocol):
    """Gets the archive bytes of one gear version."""

    def fetch(self, name: str, version: str, sha256: str) -> bytes:
        """The archive's bytes, at most :data:`~gears_sdk.archive.MAX_ARCHIVE_BYTES`."""
        ...


class StoreFetcher:
    """Reads archives straight from the registry's blob store (co-located runtimes)."""

    def __init__(self, blob_store: Any, *, max_bytes: int = MAX_ARCHIVE_BYTES):
        self.store = blob_store
        self.max_bytes = max_bytes

    def fetch(self, name: str, version: str, sha256: str) -> bytes:
        try:
            if self.store.size(sha256) > self.max_bytes:
                raise _too_large(name, version, self.max_bytes)
            with self.store.open(sha256) as stream:
                data: bytes = stream.read(self.max_bytes + 1)
        except BlobNotFound:
            raise LoaderError(f"the archive of {name} {version} ({sha256}) is not in the "
                              "blob store", code="not_found") from None
        except StorageError as exc:
            # The reason reaches workspace pages: what failed, never the store's paths.
            log.warning("reading %s %s from the blob store failed: %s", name, version, exc)
            raise LoaderError(f"cannot read {name} {version} from the blob store: "
                              f"{exc.public_message}", code="download_failed") from None
        if len(data) > self.max_bytes:
            raise _too_large(name, version, self.max_bytes)
        return data


class RegistryFetcher:
    """Downloads archives over the registry's API (remote runtimes).

    ``GET /api/v1/gears/{publisher}/{name}/{version}/download``, following the
    redirect to a presigned URL without sending the token there. The body is
    streamed with a size cap, and the registry's ``X-Gears-Sha256`` header,
    when present, must name the expected digest.
    """

    def __init__(self, base_url: str, token: str | None = None,
                 session: requests.Session | None = None, *, timeout: float = 30.0,
                 max_bytes: int = MAX_ARCHIVE_BYTES):
        base = base_url.rstrip("/")
        self.base_url = base[: -len("/api/v1")] if base.endswith("/api/v1") else base
        self.token = token
        self.session = session or requests.Session()
        self.timeout = timeout
        self.max_bytes = max_bytes

    def url_for(self, name: str, version: str) -> str:
        publisher, _, short = name.partition("/")
        if not publisher or not short or "/" in short:
            raise LoaderError(f"{name!r} is not a gear name (publisher/gear)",
                              code="not_found")
        parts = (quote(p, safe="") for p in (publisher, short, version))
        return f"{self.base_url}/api/v1/gears/{'/'.join(parts)}/download"

    def fetch(self, name: str, version: str, sha256: str) -> bytes:
        url = self.url_for(name, version)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        for _ in range(MAX_REDIRECTS + 1):
            try:
                resp = self.session.get(url, headers=headers, stream=True,
                                        allow_redirects=False, timeout=self.timeout)
            except requests.RequestException as exc:
                raise LoaderError(f"cannot reach {urlsplit(url).netloc} to download {name} "
                                  f"{version}: {exc}", code="registry_unavailable") from None
            with resp:
                claimed = resp.headers.get("X-Gears-Sha256")
                if claimed is not None and claimed.strip().lower() != sha256:
                    raise LoaderError(f"the registry says {name} {version} has sha256 "
                                      f"{claimed.strip()}, not the expected {sha256}",
                                      code="sha256_mismatch")
                if resp.is_redirect:
                    nxt = urljoin(url, resp.headers["Location"])
                    if urlsplit(nxt).netloc != urlsplit(url).netloc:
                        headers = {}  # a presigned URL carries its own authorization
                    url = nxt
                    continue
                self._check_status(resp, name, version)
                return self._read_capped(resp, name, version)
        raise LoaderError(f"too many redirects downloading {name} {version}",
                          code="download_failed")

    def _check_status(self, resp: requests.Response, name: str, version: str) -> None:
        if resp.status_code == 200:
            return
        code, message = "download_failed", f"HTTP {resp.status_code}"
        try:
            err = json.loads(resp.raw.read(64 * 1024, decode_content=True))["error"]
            code = str(err.get("code") or code)
            message = str(err.get("message") or message)
        except (ValueError, KeyError, TypeError, AttributeError, OSError):
            pass
        if resp.status_code == 404:
            code = "not_found"
        raise LoaderError(f"cannot download {name} {version}: {message}", code=code)

    def _read_capped(self, resp: requests.Response, name: str, version: str) -> bytes:
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            raise _too_large(name, version, self.max_bytes)
        buf = bytearray()
        try:
            for chunk in resp.iter_content(_CHUNK):
                buf += chunk
                if len(buf) > self.max_bytes:
                    raise _too_large(name, version, self.max_bytes)
        except requests.RequestException as exc:
            raise LoaderError(f"the download of {name} {version} broke off: {exc}",
                              code="download_failed") from None
        return bytes(buf)


def _too_large(name: str, version: str, cap: int) -> LoaderError:
    return LoaderError(f"the archive of {name} {version} is larger than {cap} bytes",
                       code="too_large")


# ---------------------------------------------------------------------------
# the cache
# ---------------------------------------------------------------------------


class GearCache:
    """A content-addressed cache of unpacked gears under ``root``.

    Safe for several processes sharing ``root``: entries appear atomically
    and are never modified after they appear.
    """

    def __init__(self, root: Path | str, fetcher: Fetcher | None = None):
        self.root = Path(root).absolute()
        self.fetcher = fetcher

    def path_for(self, sha256: str) -> Path:
        """Where the archive ``sha256`` is (or would be) unpacked."""
        return self.root / _check_sha256(sha256)

    def has(self, sha256: str) -> bool:
        """Whether a complete entry for ``sha256`` is in the cache."""
        try:
            return self.marker(sha256).get("sha256") == sha256
        except LoaderError:
            return False

    def marker(self, sha256: str) -> dict[str, Any]:
        """The entry's marker: ``{"sha256", "name", "version", "files": {path: sha256}}``."""
        path = self.path_for(sha256) / MARKER
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise LoaderError(f"{sha256} is not (completely) in the cache: {exc}",
                              code="not_found") from None
        if not isinstance(data, dict):
            raise LoaderError(f"the cache marker of {sha256} is damaged", code="tampered")
        return data

    def load(self, name: str, version: str, sha256: str,
             expected_file_hashes: dict[str, str] | None = None, *,
             signed: SignedManifest | None = None,
             public_keys: PublicKeys | None = None) -> Path:
        """:meth:`fetch`, then :meth:`verify_tree`: what a worker start uses, so a
        cache entry changed since it was unpacked never runs. A tampered entry is
        reported, not silently repaired: it is a security event.

        With ``signed`` (the registry's signed manifest) the signature is checked
        against ``public_keys`` first and the files against its signed hashes
        (see :func:`marketplace.runtime.signatures.verified_load`)."""
        if signed is not None:
            if (signed.name, signed.version, signed.sha256) != (name, version, sha256):
                raise LoaderError(f"the signed manifest names {signed.name} {signed.version} "
                                  f"({signed.sha256}), not {name} {version} ({sha256})",
                                  code="manifest_mismatch")
            signed.verify(public_keys or {})
            expected_file_hashes = signed.files
        path = self.fetch(name, version, sha256)
        self.verify_tree(sha256, expected_file_hashes)
        return path

    def fetch(self, name: str, version: str, sha256: str) -> Path:
        """The unpacked gear's directory, downloading and unpacking it if needed.

        An existing entry is returned as is; use :meth:`load` to re-check its files.
        """
        final = self.path_for(sha256)
        if self.has(sha256):
            return final
        if self.fetcher is None:
            raise LoaderError(f"{name} {version} is not cached and this cache has no fetcher",
                              code="not_found")
        data = self.fetcher.fetch(name, version, sha256)
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256:
            raise LoaderError(f"the archive of {name} {version} hashes to {actual}, not the "
                              f"expected {sha256}; it was corrupted or replaced, so it was not "
                              "used", code="sha256_mismatch")
        return self.add(data, name=name, version=version)

    def add(self, data: bytes, *, name: str | None = None, version: str | None = None) -> Path:
        """Unpack archive bytes into the cache (verified by the safe reader) and return
        the entry; ``name``/``version``, when given, must match its manifest."""
        try:
            archive = read_archive(data)
        except ArchiveError as exc:
            raise LoaderError(f"the archive of {name or 'a gear'} {version or ''} was refused "
                              f"({exc.code}): {exc.message}", code="invalid_archive") from None
        m = archive.manifest
        if (name, version) != (None, None) and (m.name, str(m.version)) != (name, version):
            raise LoaderError(f"the archive expected for {name} {version} contains "
                              f"{m.name} {m.version}", code="manifest_mismatch")
        if MARKER in archive.names:
            raise LoaderError(f"{m.name} {m.version} contains the reserved file {MARKER}",
                              code="invalid_archive")
        final = self.path_for(archive.sha256)
        if self.has(archive.sha256):
            return final
        marker = {"sha256": archive.sha256, "name": m.name, "version": str(m.version),
                  "files": archive.file_hashes()}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        except OSError as exc:
            raise _os_error(exc, m.name, str(m.version)) from None
        try:
            self._unpack(archive, tmp, marker)
            self._publish(tmp, final, archive.sha256)
        except OSError as exc:
            raise _os_error(exc, m.name, str(m.version)) from None
        finally:
            if tmp.exists():
                _remove_tree(tmp)
        return final

    def _unpack(self, archive: Any, tmp: Path, marker: dict[str, Any]) -> None:
        archive.extract_to(tmp)
        fd = os.open(tmp / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(marker, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        _make_read_only(tmp)

    def _publish(self, tmp: Path, final: Path, sha256: str) -> None:
        for _ in range(2):
            try:
                os.rename(tmp, final)
                return
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
            if self.has(sha256):
                return  # another process won the race; its entry is equivalent
            # A damaged entry (no marker) is in the way: move it aside, then retry.
            self._discard(final)
        raise LoaderError(f"cannot place {sha256} in the cache: {final} keeps reappearing "
                          "without a marker", code="cache_error")

    def evict(self, sha256: str) -> None:
        """Remove an entry; a missing entry is not an error. Processes that still run
        the gear keep their open files; new loads fetch it again."""
        self._discard(self.path_for(sha256))

    def prune(self, keep: set[str]) -> list[str]:
        """Remove every entry not in ``keep`` and stale temporary directories;
        return the evicted digests."""
        removed: list[str] = []
        if not self.root.is_dir():
            return removed
        now = time.time()
        for entry in self.root.iterdir():
            if _SHA256_RE.fullmatch(entry.name):
                if entry.name not in keep:
                    self._discard(entry)
                    removed.append(entry.name)
            elif entry.name.startswith(".tmp-"):
                try:
                    if now - entry.lstat().st_mtime > STALE_TEMP_SECONDS:
                        _remove_tree(entry)
                except FileNotFoundError:
                    pass
        return sorted(removed)

    def _discard(self, path: Path) -> None:
        # Renaming first makes the entry vanish at once for every other process.
        trash = self.root / f".tmp-evict-{os.urandom(6).hex()}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        _remove_tree(trash)

    def verify_tree(self, sha256: str, expected_file_hashes: dict[str, str] | None = None) -> None:
        """Check the unpacked files against ``expected_file_hashes`` (default: the
        marker's); raise ``LoaderError(code="tampered")`` naming every modified,
        extra or missing file."""
        root = self.path_for(sha256)
        expected = (expected_file_hashes if expected_file_hashes is not None
                    else self.marker(sha256).get("files") or {})
        actual = _tree_hashes(root)
        found = {
            "modified": sorted(p for p in expected.keys() & actual.keys()
                               if actual[p] != expected[p]),
            "extra": sorted(actual.keys() - expected.keys()),
            "missing": sorted(expected.keys() - actual.keys()),
        }
        if any(found.values()):
            parts = [f"{kind}: {', '.join(paths)}" for kind, paths in found.items() if paths]
            raise LoaderError(f"the cached files of {sha256} were changed ({'; '.join(parts)}); "
                              "the gear will not be loaded", code="tampered", files=found,
                              hint="evict the entry so it is downloaded and verified again")


def _tree_hashes(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of everything under ``root`` except the marker;
    links and special files hash to a label so they always count as modified."""
    out: dict[str, str] = {}
    if not root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in dirnames + filenames:
            path = base / name
            rel = path.relative_to(root).as_posix()
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):
                continue
            if rel == MARKER:
                continue
            if not stat.S_ISREG(st.st_mode):
                out[rel] = "not-a-regular-file"
                continue
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
            out[rel] = digest.hexdigest()
    return out


def _make_read_only(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o444)
        os.chmod(dirpath, 0o555)  # noqa: S103 - read-only, not permissive


def _remove_tree(path: Path) -> None:
    """``rmtree`` that first gives back the write permission read-only entries lack."""
    for dirpath, _dirs, _files in os.walk(path):
        try:
            os.chmod(dirpath, 0o700)
        except OSError:
            pass
    shutil.rmtree(path, ignore_errors=True)


def _os_error(exc: OSError, name: str, version: str) -> LoaderError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LoaderError(f"the gear cache is full: no space left to unpack {name} {version}",
                           code="cache_full",
                           hint="free disk space or prune the cache of unused gears")
    return LoaderError(f"cannot unpack {name} {version} into the cache: {exc}",
                       code="cache_error")
