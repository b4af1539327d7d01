"""Named limits of the ``.gear`` format, and the stable reason codes of refusal."""

from __future__ import annotations

from dataclasses import dataclass

from gears_sdk.errors import ArchiveError, Problem
from gears_sdk.manifest import MAX_MANIFEST_BYTES

#: The ``.gear`` file itself; larger inputs are refused before they are parsed.
MAX_ARCHIVE_BYTES = 16 * 1024 * 1024
#: Entries in the archive (directory entries count too).
MAX_FILES = 1000
#: Uncompressed size of one member.
MAX_MEMBER_BYTES = 8 * 1024 * 1024
#: Uncompressed size of all members together.
MAX_TOTAL_BYTES = 32 * 1024 * 1024
#: Uncompressed/compressed size, per member, for members above
#: :data:`RATIO_MIN_BYTES` (real source and data files stay far below it).
MAX_COMPRESSION_RATIO = 100
#: Members smaller than this are not held to :data:`MAX_COMPRESSION_RATIO`.
RATIO_MIN_BYTES = 256 * 1024
#: UTF-8 bytes of a member's whole path.
MAX_NAME_BYTES = 255
#: Path segments of a member (``a/b/c.py`` has 3).
MAX_PATH_DEPTH = 16
#: Every member of a built archive carries this timestamp, so builds are reproducible.
FIXED_TIMESTAMP = (1980, 1, 1, 0, 0, 0)

#: Every ``ArchiveError.code`` the reader and builder raise. They are a stable
#: contract: the registry reports them in vetting reports and API errors.
REASON_CODES = (
    "not_a_zip",
    "archive_too_large",
    "unsupported_zip_feature",
    "prepended_data",
    "trailing_data",
    "header_mismatch",
    "crc_mismatch",
    "encrypted",
    "unsupported_compression",
    "too_many_files",
    "member_too_large",
    "total_too_large",
    "compression_ratio",
    "path_traversal",
    "absolute_path",
    "backslash",
    "drive_letter",
    "invalid_name",
    "name_too_long",
    "path_too_deep",
    "control_character",
    "bidi_character",
    "duplicate_name",
    "case_collision",
    "unicode_collision",
    "link",
    "special_file",
    "nested_archive",
    "native_code",
    "bytecode",
    "pth_file",
    "sitecustomize",
    "missing_manifest",
    "manifest_too_large",
    "invalid_manifest",
    "entrypoint_missing",
    "readme_missing",
)


@dataclass(frozen=True)
class ArchiveLimits:
    """The limits one read or build is held to; defaults are the module constants.

    Operators may tighten them (never needed to loosen them for real gears);
    tests tighten them to exercise each limit with small inputs.
    """

    max_archive_bytes: int = MAX_ARCHIVE_BYTES
    max_files: int = MAX_FILES
    max_member_bytes: int = MAX_MEMBER_BYTES
    max_total_bytes: int = MAX_TOTAL_BYTES
    max_compression_ratio: int = MAX_COMPRESSION_RATIO
    ratio_min_bytes: int = RATIO_MIN_BYTES
    max_name_bytes: int = MAX_NAME_BYTES
    max_path_depth: int = MAX_PATH_DEPTH
    max_manifest_bytes: int = MAX_MANIFEST_BYTES


DEFAULT_LIMITS = ArchiveLimits()


class ArchiveManifestError(ArchiveError):
    """The archive's ``gear.json`` is invalid; ``problems`` lists every finding
    (the :class:`~gears_sdk.errors.ManifestError`'s problems, unchanged)."""

    def __init__(self, message: str, problems: list[Problem]):
        super().__init__("invalid_manifest", message, member="gear.json")
        self.problems = list(problems)
