"""``read_archive``: the one safe way to open a ``.gear``."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from gears_sdk.archive import zipformat as zf
from gears_sdk.archive.limits import DEFAULT_LIMITS, ArchiveLimits, ArchiveManifestError
from gears_sdk.archive.policy import (
    check_collisions,
    check_member_content,
    check_member_kind,
    check_name,
    quote,
    refuse,
)
from gears_sdk.errors import ArchiveError, ManifestError
from gears_sdk.manifest import MANIFEST_NAME, Manifest, load_manifest

_S_IFMT_DOS_DIR = 0x10


class GearArchive:
    """A ``.gear`` that passed every check of :func:`read_archive`.

    Members are held in memory; nothing was written to disk. ``names`` are
    the member files, sorted (directory entries are not members).
    """

    def __init__(self, data: bytes, manifest: Manifest, members: Mapping[str, bytes]):
        self.data = data
        self.manifest = manifest
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.size = len(data)
        self._members = dict(members)
        self.names: tuple[str, ...] = tuple(sorted(self._members))

    def __repr__(self) -> str:
        m = self.manifest
        return f"<GearArchive {m.name} {m.version} sha256={self.sha256[:12]}>"

    def read(self, name: str) -> bytes:
        """The bytes of member ``name``; :class:`KeyError` if there is none."""
        try:
            return self._members[name]
        except KeyError:
            raise KeyError(f"the archive has no member {name!r}") from None

    def file_hashes(self) -> dict[str, str]:
        """``{path: sha256 hex}`` of every member, ``gear.json`` included."""
        return {n: hashlib.sha256(self._members[n]).hexdigest() for n in self.names}

    def readme(self) -> str | None:
        """The text of the manifest's readme, or ``None`` if the archive has none."""
        raw = self._members.get(self.manifest.readme)
        return None if raw is None else raw.decode("utf-8", "replace")

    def extract_to(self, dest: Path | str, *, read_only: bool = False) -> None:
        """Write the members under ``dest``, which must be new or an empty directory.

        Names were checked when the archive was read; files are still created
        exclusively and without following links, so a directory prepared by
        someone else cannot redirect them. With ``read_only`` files become
        0o444 and directories (``dest`` included) 0o555.
        """
        root = Path(dest)
        if root.is_symlink() or (root.exists() and (not root.is_dir() or any(root.iterdir()))):
            raise FileExistsError(f"{root} must be a new or empty directory")
        root.mkdir(parents=True, exist_ok=True)
        made_dirs = {root}
        for name in self.names:
            parts = name.split("/")
            parent = root
            for part in parts[:-1]:
                parent = parent / part
                if parent not in made_dirs:
                    os.mkdir(parent, 0o755)
                    made_dirs.add(parent)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(parent / parts[-1], flags, 0o644)
            with os.fdopen(fd, "wb") as fh:
                fh.write(self._members[name])
            if read_only:
                os.chmod(parent / parts[-1], 0o444)
        if read_only:
            for d in sorted(made_dirs, key=lambda p: len(p.parts), reverse=True):
                os.chmod(d, 0o555)  # noqa: S103 - read-only, not permissive


def read_archive(
    source: bytes | Path | str | BinaryIO, *, limits: ArchiveLimits | None = None
) -> GearArchive:
    """Read and verify a ``.gear``; raise :class:`ArchiveError` for the first problem.

    ``source`` is the archive's bytes, a path to it, or a binary file object.
    Checks run cheapest first: the container's structure and every name and
    recorded size, then the local headers, then decompression (capped at the
    recorded size, so a lying header cannot make it allocate more), contents,
    and finally the manifest and the files it names.
    """
    limits = limits or DEFAULT_LIMITS
    data = _load(source, limits.max_archive_bytes)
    entries, cd_offset = zf.read_central_directory(data, limits.max_files)
    files, dirs = [], []
    for e in entries:
        if _check_entry(e, limits):
            dirs.append(e.name[:-1])
        else:
            files.append(e)
    check_collisions([e.name for e in files], dirs)
    _check_total(files, limits)
    starts = zf.locate_data(data, entries, cd_offset)
    _check_manifest_entry(files, limits)
    members = {e.name: _inflate(data, starts[e.index], e) for e in files}
    manifest = _load_manifest(members[MANIFEST_NAME])
    _check_declared_files(manifest, members)
    return GearArchive(data, manifest, members)


def _load(source: bytes | Path | str | BinaryIO, cap: int) -> bytes:
    too_large = ArchiveError("archive_too_large", f"the archive is larger than {cap} bytes")
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > cap:
            raise too_large
        return bytes(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise ArchiveError("not_a_zip", f"{path} does not exist") from None
        if not stat.S_ISREG(st.st_mode):
            raise ArchiveError("not_a_zip", f"{path} is not a regular file")
        if st.st_size > cap:
            raise too_large
        with path.open("rb") as fh:
            return _read_capped(fh, cap, too_large)
    return _read_capped(source, cap, too_large)


def _read_capped(fh: BinaryIO | io.BufferedReader, cap: int, too_large: ArchiveError) -> bytes:
    buf = bytearray()
    while len(buf) <= cap:
        chunk = fh.read(cap + 1 - len(buf))
        if not isinstance(chunk, (bytes, bytearray)):
            raise TypeError("read_archive needs a binary file object")
        if not chunk:
            break
        buf += chunk
    if len(buf) > cap:
        raise too_large
    return bytes(buf)


def _check_entry(e: zf.Entry, limits: ArchiveLimits) -> bool:
    """Check one central entry without touching its data; True if it is a directory."""
    name = e.name
    if e.flags & (zf.FLAG_ENCRYPTED | zf.FLAG_STRONG_ENCRYPTION | zf.FLAG_MASKED_HEADERS):
        raise refuse("encrypted", name, "the member is encrypted")
    if e.method not in (zf.STORED, zf.DEFLATED):
        raise refuse("unsupported_compression", name, f"compression method {e.method} is not "
                     "supported; use deflate or none")
    if e.flags & ~zf.KNOWN_FLAGS & 0xFFFF:
        raise refuse("unsupported_zip_feature", name, f"it uses zip features (flags "
                     f"0x{e.flags:04x}) beyond plain deflate")
    if e.version_needed > zf.MAX_VERSION_NEEDED:
        raise refuse("unsupported_zip_feature", name, f"it needs zip version "
                     f"{e.version_needed / 10:.1f} to extract")
    if e.disk_start:
        raise refuse("unsupported_zip_feature", name, "multi-disk archives are not supported")
    if 0xFFFFFFFF in (e.compress_size, e.file_size, e.header_offset):
        raise refuse("unsupported_zip_feature", name, "zip64 members are not supported")
    zf.check_extra(e.extra, name)
    is_dir = _is_dir(e)
    segments = check_name(name[:-1] if is_dir else name, limits)
    if is_dir:
        if e.file_size or e.compress_size > 2:
            raise refuse("invalid_name", name, "a directory entry holds data")
        return True
    if e.method == zf.STORED and e.compress_size != e.file_size:
        raise refuse("header_mismatch", name, "a stored member's sizes differ")
    if e.file_size > limits.max_member_bytes:
        raise refuse("member_too_large", name, f"it is {e.file_size} bytes uncompressed; "
                     f"at most {limits.max_member_bytes} are allowed")
    if e.file_size >= limits.ratio_min_bytes and (
        e.file_size > e.compress_size * limits.max_compression_ratio
    ):
        raise refuse("compression_ratio", name, f"it expands from {e.compress_size} to "
                     f"{e.file_size} bytes, more than {limits.max_compression_ratio} times "
                     "(a compression bomb)")
    check_member_kind(name, segments)
    return False


def _is_dir(e: zf.Entry) -> bool:
    mode = e.mode
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        raise refuse("link", e.name, "symbolic links are not allowed in a gear")
    if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
        raise refuse("special_file", e.name, "devices, fifos and sockets are not allowed")
    dos_dir = e.create_system == 0 and e.external_attr & _S_IFMT_DOS_DIR
    dir_marked = kind == stat.S_IFDIR or dos_dir
    if e.name.endswith("/"):
        if kind == stat.S_IFREG:
            raise refuse("invalid_name", e.name, "a regular file's name ends with '/'")
        return True
    if dir_marked:
        raise refuse("invalid_name", e.name, "a directory entry's name must end with '/'")
    return False


def _check_total(files: list[zf.Entry], limits: ArchiveLimits) -> None:
    total = 0
    for e in files:
        total += e.file_size
        if total > limits.max_total_bytes:
            raise refuse("total_too_large", e.name, "the members add up to more than "
                         f"{limits.max_total_bytes} bytes uncompressed")


def _check_manifest_entry(files: list[zf.Entry], limits: ArchiveLimits) -> None:
    entry = next((e for e in files if e.name == MANIFEST_NAME), None)
    if entry is None:
        raise ArchiveError("missing_manifest", f"the archive has no {MANIFEST_NAME} at its root")
    if entry.file_size > limits.max_manifest_bytes:
        raise refuse("manifest_too_large", MANIFEST_NAME, f"it is {entry.file_size} bytes; at "
                     f"most {limits.max_manifest_bytes} are allowed")


def _inflate(data: bytes, start: int, e: zf.Entry) -> bytes:
    raw = data[start:start + e.compress_size]
    if e.method == zf.STORED:
        out = raw
    else:
        d = zlib.decompressobj(-15)
        try:
            # Never produce more than one byte past the recorded size (which
            # was checked against the limits): a lying header stops here.
            out = d.decompress(raw, e.file_size + 1)
        except zlib.error as exc:
            raise refuse("header_mismatch", e.name, f"its deflate data is damaged ({exc})")
        if len(out) != e.file_size or not d.eof or d.unused_data:
            raise refuse("header_mismatch", e.name, "its data does not match its recorded size")
    if zlib.crc32(out) != e.crc:
        raise refuse("crc_mismatch", e.name, "its data does not match its recorded CRC-32")
    check_member_content(e.name, out)
    return out


def _load_manifest(raw: bytes) -> Manifest:
    try:
        return load_manifest(raw)
    except ManifestError as exc:
        message = f"{MANIFEST_NAME} is invalid: {exc.message}"
        raise ArchiveManifestError(message, exc.problems) from None


def _check_declared_files(manifest: Manifest, members: Mapping[str, bytes]) -> None:
    module = manifest.entrypoint.replace(".", "/")
    if f"{module}.py" not in members and f"{module}/__init__.py" not in members:
        raise ArchiveError("entrypoint_missing", f"the entrypoint {manifest.entrypoint!r} is not "
                           f"in the archive (expected {module}.py or {module}/__init__.py)")
    if "readme" in manifest.raw and manifest.readme not in members:
        raise ArchiveError("readme_missing", f"the readme {quote(manifest.readme)} declared in "
                           f"{MANIFEST_NAME} is not in the archive", member=manifest.readme)
