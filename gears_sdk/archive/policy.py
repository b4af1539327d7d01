"""What may be inside a gear: member names and member contents.

Shared by the reader and the builder so that ``gears build`` refuses exactly
what the registry would refuse, with the same reason codes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from gears_sdk.archive.limits import ArchiveLimits
from gears_sdk.errors import ArchiveError

#: Characters that reorder how a name is displayed, so ``evil\u202eyp.txt``
#: can pose as ``evil.txt.py`` to a reviewer.
BIDI_CHARACTERS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)
#: Characters Windows (and many tools) cannot hold in a file name.
_NON_PORTABLE = frozenset('<>:"|?*')
_WINDOWS_DEVICES = frozenset(
    ["con", "prn", "aux", "nul"] + [f"{p}{i}" for p in ("com", "lpt") for i in range(1, 10)]
)
_DRIVE = re.compile(r"^[A-Za-z]:")

NATIVE_SUFFIXES = frozenset({".so", ".pyd", ".dylib", ".dll", ".exe"})
_VERSIONED_SO = re.compile(r"\.so(\.\d+)+$")
BYTECODE_SUFFIXES = frozenset({".pyc", ".pyo"})
ARCHIVE_SUFFIXES = frozenset({
    ".zip", ".gear", ".whl", ".egg", ".jar", ".tar", ".gz", ".tgz", ".bz2", ".tbz2",
    ".xz", ".txz", ".lzma", ".zst", ".7z", ".rar",
})
SITE_HOOK_NAMES = frozenset({"sitecustomize", "usercustomize"})


def refuse(code: str, member: str, message: str) -> ArchiveError:
    """An :class:`ArchiveError` about ``member``, its name quoted safely."""
    return ArchiveError(code, f"{quote(member)}: {message}", member=member)


def quote(name: str, limit: int = 120) -> str:
    """``name`` as a short ASCII-safe literal, so control and bidi characters
    in a hostile name cannot garble the message that reports it."""
    text = ascii(name)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def check_name(name: str, limits: ArchiveLimits) -> list[str]:
    """Check a member's path (without a directory entry's trailing ``/``).

    Returns its segments; raises :class:`ArchiveError` for the first problem.
    The order is fixed so the same archive always gets the same reason.
    """
    if len(name.encode("utf-8", "surrogatepass")) > limits.max_name_bytes:
        raise refuse("name_too_long", name,
                     f"the path is longer than {limits.max_name_bytes} bytes")
    if not name:
        raise refuse("invalid_name", name, "a member has an empty name")
    for ch in name:
        _check_char(name, ch)
    if "\\" in name:
        raise refuse("backslash", name, "the path contains a backslash; use / between directories")
    if name.startswith("/"):
        raise refuse("absolute_path", name, "the path is absolute; member paths must be relative")
    if _DRIVE.match(name):
        raise refuse("drive_letter", name, "the path starts with a drive letter")
    segments = name.split("/")
    if ".." in segments:
        raise refuse("path_traversal", name, "the path contains '..' and would escape the gear")
    for seg in segments:
        _check_segment(name, seg)
    if len(segments) > limits.max_path_depth:
        raise refuse("path_too_deep", name,
                     f"the path is {len(segments)} levels deep; at most {limits.max_path_depth}")
    return segments


def _check_char(name: str, ch: str) -> None:
    cat = unicodedata.category(ch)
    if cat == "Cc":
        raise refuse("control_character", name,
                     f"the path contains the control character U+{ord(ch):04X}")
    if ch in BIDI_CHARACTERS:
        raise refuse("bidi_character", name,
                     f"the path contains U+{ord(ch):04X}, which changes how the name is displayed")
    if cat in ("Cf", "Zl", "Zp", "Co", "Cs", "Cn"):
        raise refuse("invalid_name", name,
                     f"the path contains the invisible or unassigned character U+{ord(ch):04X}")


def _check_segment(name: str, seg: str) -> None:
    if seg in ("", "."):
        raise refuse("invalid_name", name, "the path has an empty or '.' segment")
    bad = sorted(set(seg) & _NON_PORTABLE)
    if bad:
        raise refuse("invalid_name", name, f"the path contains {bad[0]!r}, which is not portable")
    if seg[-1] in ". ":
        raise refuse("invalid_name", name, f"the segment {seg!r} ends with a dot or a space")
    if seg.split(".", 1)[0].casefold() in _WINDOWS_DEVICES:
        raise refuse("invalid_name", name, f"{seg!r} is a reserved device name on Windows")


def _suffix(seg: str) -> str:
    dot = seg.rfind(".")
    return seg[dot:].casefold() if dot > 0 else ""


def check_member_kind(name: str, segments: list[str]) -> None:
    """Refuse members that are unsafe by name alone: native code, bytecode,
    ``.pth`` files, site hooks and nested archives."""
    base = segments[-1]
    suffix = _suffix(base)
    if suffix in NATIVE_SUFFIXES or _VERSIONED_SO.search(base.casefold()):
        raise refuse("native_code", name, "native code is not allowed in a gear")
    if suffix in BYTECODE_SUFFIXES or "__pycache__" in segments:
        raise refuse("bytecode", name,
                     "compiled Python is not allowed in a gear; ship sources only")
    if suffix == ".pth":
        raise refuse("pth_file", name, ".pth files run code at interpreter start-up")
    for seg in segments:
        if seg.split(".", 1)[0].casefold() in SITE_HOOK_NAMES:
            raise refuse("sitecustomize", name,
                         "sitecustomize/usercustomize run code at interpreter start-up")
    if suffix in ARCHIVE_SUFFIXES:
        raise refuse("nested_archive", name, "archives inside a gear are not allowed")


_ARCHIVE_MAGIC = (
    (b"PK\x03\x04", "a zip archive"),
    (b"PK\x05\x06", "a zip archive"),
    (b"PK\x07\x08", "a zip archive"),
    (b"\x1f\x8b", "gzip data"),
    (b"\xfd7zXZ\x00", "xz data"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive"),
    (b"Rar!\x1a\x07", "a rar archive"),
    (b"\x28\xb5\x2f\xfd", "zstd data"),
)
_BZIP2 = re.compile(rb"^BZh[1-9](\x31\x41\x59\x26\x53\x59|\x17\x72\x45\x38\x50\x90)")
_NATIVE_MAGIC = (
    (b"\x7fELF", "an ELF binary"),
    (b"\xfe\xed\xfa\xce", "a Mach-O binary"),
    (b"\xfe\xed\xfa\xcf", "a Mach-O binary"),
    (b"\xce\xfa\xed\xfe", "a Mach-O binary"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O binary"),
    (b"\xca\xfe\xba\xbe", "a Mach-O universal binary"),
)


def check_member_content(name: str, data: bytes) -> None:
    """Refuse native code and nested archives recognised by their magic bytes,
    whatever the member is called."""
    for magic, what in _NATIVE_MAGIC:
        if data.startswith(magic):
            raise refuse("native_code", name, f"the file is {what}")
    if _is_pe(data):
        raise refuse("native_code", name, "the file is a Windows executable (PE)")
    for magic, what in _ARCHIVE_MAGIC:
        if data.startswith(magic):
            raise refuse("nested_archive", name, f"the file is {what}")
    if _BZIP2.match(data):
        raise refuse("nested_archive", name, "the file is bzip2 data")
    if len(data) >= 262 and data[257:262] == b"ustar":
        raise refuse("nested_archive", name, "the file is a tar archive")


def _is_pe(data: bytes) -> bool:
    if not data.startswith(b"MZ") or len(data) < 64:
        return False
    pe = int.from_bytes(data[60:64], "little")
    return data[pe:pe + 4] == b"PE\x00\x00"


def _norm(name: str) -> str:
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


def check_collisions(files: Iterable[str], dirs: Iterable[str] = ()) -> None:
    """Refuse names that would land on the same file once extracted: exact
    duplicates, names equal ignoring case (macOS, Windows), names equal after
    Unicode normalization, and a file that is also another member's directory."""
    levels = (
        ("duplicate_name", lambda s: s, "appears more than once"),
        ("case_collision", str.casefold, "differs only in letter case from"),
        ("unicode_collision", _norm, "differs only in Unicode normalization from"),
    )
    files = list(files)
    all_dirs = set(dirs)
    for f in files:
        parts = f.split("/")
        all_dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    for code, key, phrase in levels:
        seen: dict[str, str] = {}
        for f in files:
            k = key(f)
            if k in seen:
                other = seen[k]
                msg = phrase if other == f else f"{phrase} {quote(other)}"
                raise refuse(code, f, msg)
            seen[k] = f
        seen_dirs: dict[str, str] = {}
        for d in sorted(all_dirs):
            k = key(d)
            if k in seen:
                raise refuse(code, seen[k], f"is a file but also the directory {quote(d)}")
            if k in seen_dirs and code != "duplicate_name":
                raise refuse(code, d, f"{phrase} the directory {quote(seen_dirs[k])}")
            seen_dirs[k] = d
