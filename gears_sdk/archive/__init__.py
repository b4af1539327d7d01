"""The ``.gear`` archive: reproducible building and the one safe reader.

A ``.gear`` is a zip archive with ``gear.json`` at its root. Archives reach
the registry from anyone, so :func:`read_archive` treats every byte as
hostile. It defends against:

* **escaping the gear on extraction**: ``..``, absolute paths, drive letters,
  backslashes, links and special files;
* **ambiguity**: one archive read differently by different tools (data before
  or after the archive, local headers that disagree with the central
  directory, overlapping members, duplicate names, names that collide on
  case-insensitive or normalizing file systems, names that display
  misleadingly with control or bidi characters);
* **resource exhaustion**: oversized inputs, too many members, and
  compression bombs, by capping sizes while decompressing instead of
  trusting headers;
* **code a reviewer cannot read or that runs too early**: native code,
  bytecode, nested archives, ``.pth`` files and ``sitecustomize``.

Everything is checked in memory, cheapest first, before anything is written
to disk; the first problem raises :class:`~gears_sdk.errors.ArchiveError`
whose ``code`` is one of :data:`REASON_CODES`. Directory entries are allowed
(other zip tools write them) but ignored; a file is never also a directory.
An archive comment counts as trailing data and is refused.

:func:`build_archive` refuses what the reader would refuse, with the same
codes, and verifies its own output with :func:`read_archive`.
"""

from gears_sdk.archive.build import (
    COMPRESS_LEVEL,
    BuiltArchive,
    build_archive,
    build_archive_bytes,
    collect_files,
)
from gears_sdk.archive.limits import (
    DEFAULT_LIMITS,
    FIXED_TIMESTAMP,
    MAX_ARCHIVE_BYTES,
    MAX_COMPRESSION_RATIO,
    MAX_FILES,
    MAX_MEMBER_BYTES,
    MAX_NAME_BYTES,
    MAX_PATH_DEPTH,
    MAX_TOTAL_BYTES,
    RATIO_MIN_BYTES,
    REASON_CODES,
    ArchiveLimits,
    ArchiveManifestError,
)
from gears_sdk.archive.read import GearArchive, read_archive
from gears_sdk.errors import ArchiveError

__all__ = [
    "COMPRESS_LEVEL",
    "DEFAULT_LIMITS",
    "FIXED_TIMESTAMP",
    "MAX_ARCHIVE_BYTES",
    "MAX_COMPRESSION_RATIO",
    "MAX_FILES",
    "MAX_MEMBER_BYTES",
    "MAX_NAME_BYTES",
    "MAX_PATH_DEPTH",
    "MAX_TOTAL_BYTES",
    "RATIO_MIN_BYTES",
    "REASON_CODES",
    "ArchiveError",
    "ArchiveLimits",
    "ArchiveManifestError",
    "BuiltArchive",
    "GearArchive",
    "build_archive",
    "build_archive_bytes",
    "collect_files",
    "read_archive",
]
