"""Reproducible ``.gear`` building: same input, same bytes, same sha256."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from gears_sdk.archive.limits import DEFAULT_LIMITS, FIXED_TIMESTAMP, ArchiveLimits
from gears_sdk.archive.policy import refuse
from gears_sdk.archive.read import read_archive
from gears_sdk.errors import ArchiveError
from gears_sdk.manifest import Manifest, load_manifest

#: Deflate level of every member; fixed so the bytes do not depend on defaults.
COMPRESS_LEVEL = 9
#: Every member is a plain file, rw-r--r--, recorded as made on Unix.
MEMBER_ATTR = (stat.S_IFREG | 0o644) << 16
CREATE_SYSTEM_UNIX = 3
#: Top-level directories that are not part of the shipped gear.
EXCLUDED_TOP_DIRS = frozenset({"dist", "build", "tests"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".gear")


@dataclass(frozen=True)
class BuiltArchive:
    """A ``.gear`` written by :func:`build_archive`."""

    path: Path
    sha256: str
    size: int
    manifest: Manifest
    files: tuple[str, ...]


def _excluded(parts: tuple[str, ...], is_dir: bool) -> bool:
    last = parts[-1]
    if last.startswith(".") or last == "__pycache__":
        return True
    if is_dir:
        return (len(parts) == 1 and last in EXCLUDED_TOP_DIRS) or last.endswith(".egg-info")
    return last.endswith(EXCLUDED_SUFFIXES)


def collect_files(src_dir: Path | str) -> list[str]:
    """Relative POSIX paths of what goes into the archive, sorted.

    Left out: dot-files and dot-directories, ``__pycache__``, ``*.pyc``,
    ``*.pyo``, ``*.egg-info``, ``*.gear``, and the top-level ``dist/``,
    ``build/`` and ``tests/`` (a gear's tests are not shipped). Symbolic
    links and other non-regular files are listed, not followed, so that
    :func:`build_archive` can refuse them.
    """
    root = Path(src_dir)
    out: list[str] = []

    def walk(d: Path, prefix: tuple[str, ...]) -> None:
        with os.scandir(d) as it:
            items = sorted(it, key=lambda de: de.name)
        for de in items:
            parts = (*prefix, de.name)
            is_dir = de.is_dir(follow_symlinks=False)
            if _excluded(parts, is_dir):
                continue
            if is_dir:
                walk(Path(de.path), parts)
            else:
                out.append("/".join(parts))

    walk(root, ())
    return sorted(out)


def build_archive_bytes(
    src_dir: Path | str, *, limits: ArchiveLimits | None = None
) -> tuple[bytes, Manifest]:
    """Build the archive of ``src_dir`` in memory and verify it with :func:`read_archive`.

    Raises :class:`~gears_sdk.errors.ManifestError` for an invalid
    ``gear.json`` and :class:`~gears_sdk.errors.ArchiveError`, with the
    reader's reason codes, for anything the registry would refuse.
    """
    data, manifest, _ = _build(Path(src_dir), limits or DEFAULT_LIMITS)
    return data, manifest


def _build(root: Path, limits: ArchiveLimits) -> tuple[bytes, Manifest, tuple[str, ...]]:
    manifest = load_manifest(root)
    files = collect_files(root)
    _check_declared(manifest, files)
    if len(files) > limits.max_files:
        raise ArchiveError("too_many_files", f"{len(files)} files would be packed; "
                           f"at most {limits.max_files} are allowed")
    total = 0
    for name in files:
        total += _check_source_file(root / name, name, limits)
        if total > limits.max_total_bytes:
            raise refuse("total_too_large", name, "the files add up to more than "
                         f"{limits.max_total_bytes} bytes")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in files:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIMESTAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = CREATE_SYSTEM_UNIX
            info.external_attr = MEMBER_ATTR
            zf.writestr(info, (root / name).read_bytes(), compresslevel=COMPRESS_LEVEL)
    data = buf.getvalue()
    read_archive(data, limits=limits)
    return data, manifest, tuple(files)


def _check_declared(manifest: Manifest, files: list[str]) -> None:
    names = set(files)
    module = manifest.entrypoint.replace(".", "/")
    if f"{module}.py" not in names and f"{module}/__init__.py" not in names:
        raise ArchiveError("entrypoint_missing", f"the entrypoint {manifest.entrypoint!r} was not "
                           f"found: create {module}.py or {module}/__init__.py")
    if "readme" in manifest.raw and manifest.readme not in names:
        raise ArchiveError("readme_missing", f"the readme {manifest.readme!r} declared in "
                           "gear.json does not exist", member=manifest.readme)


def _check_source_file(path: Path, name: str, limits: ArchiveLimits) -> int:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise refuse("invalid_name", name, "the file name is not valid UTF-8") from None
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        raise refuse("link", name, "symbolic links cannot be packed; copy the file instead")
    if not stat.S_ISREG(st.st_mode):
        raise refuse("special_file", name, "only regular files can be packed")
    if st.st_size > limits.max_member_bytes:
        raise refuse("member_too_large", name, f"it is {st.st_size} bytes; "
                     f"at most {limits.max_member_bytes} are allowed")
    return st.st_size


def build_archive(
    src_dir: Path | str, out_dir: Path | str | None = None, *, limits: ArchiveLimits | None = None
) -> BuiltArchive:
    """Build ``<publisher>-<name>-<version>.gear`` from ``src_dir`` into
    ``out_dir`` (default ``src_dir/dist``), atomically.

    Members are sorted, stamped with :data:`FIXED_TIMESTAMP`, rw-r--r--,
    deflated at a fixed level, without directory entries or extra fields,
    so two builds of the same files give the same bytes whatever their
    modification times and permissions.
    """
    root = Path(src_dir)
    data, manifest, files = _build(root, limits or DEFAULT_LIMITS)
    out = Path(out_dir) if out_dir is not None else root / "dist"
    out.mkdir(parents=True, exist_ok=True)
    target = out / manifest.archive_name
    fd, tmp = tempfile.mkstemp(prefix=f".{manifest.archive_name}.", suffix=".tmp", dir=out)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return BuiltArchive(
        path=target, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
        manifest=manifest, files=files,
    )
