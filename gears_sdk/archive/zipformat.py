"""A strict parser of the zip container, written for hostile input.

:mod:`zipfile` is forgiving by design: it finds the end record anywhere near
the end, shifts every offset to tolerate data before the archive, ignores the
local headers' names and sizes, and lets members overlap. Each of those is a
way for one archive to mean different things to different tools, so the
reader here accepts only the plain, canonical shape:

``[local header + data (+ descriptor)] ... [central directory] [end record]``

tiling the whole input with no gaps, no overlaps, no comment, no zip64 and no
multi-disk fields, every local header agreeing with its central entry.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gears_sdk.archive.policy import quote
from gears_sdk.errors import ArchiveError

EOCD = struct.Struct("<4s4H2LH")
CENTRAL = struct.Struct("<4s6H3L5H2L")
LOCAL = struct.Struct("<4s5H3L2H")
DESCRIPTOR = struct.Struct("<3L")
EOCD_SIG = b"PK\x05\x06"
CENTRAL_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"
DESCRIPTOR_SIG = b"PK\x07\x08"
ZIP64_LOCATOR_SIG = b"PK\x06\x07"

STORED = 0
DEFLATED = 8
FLAG_ENCRYPTED = 0x0001
FLAG_DESCRIPTOR = 0x0008
FLAG_STRONG_ENCRYPTION = 0x0040
FLAG_UTF8 = 0x0800
FLAG_MASKED_HEADERS = 0x2000
#: Flag bits a plain deflated or stored member may carry: 1 and 2 only hint
#: at the deflate level. Anything else (patched data, enhanced deflate,
#: reserved bits) is a feature this reader does not speak.
KNOWN_FLAGS = 0x0002 | 0x0004 | FLAG_DESCRIPTOR | FLAG_UTF8
#: Flag bits local and central records must agree on.
_SIGNIFICANT_FLAGS = 0xFFFF & ~0x0006
#: "Version needed to extract" above this (6.3, as zipfile) means features we refuse.
MAX_VERSION_NEEDED = 63
EXTRA_ZIP64 = 0x0001
#: Info-ZIP "Unicode path" and "Unicode comment" extras: some tools replace
#: the member's name with them, so the same member has two names.
EXTRA_UNICODE = frozenset({0x7075, 0x6375})


@dataclass(frozen=True)
class Entry:
    """One central directory entry, as recorded."""

    index: int
    version_needed: int
    raw_name: bytes
    name: str
    flags: int
    method: int
    crc: int
    compress_size: int
    file_size: int
    header_offset: int
    create_system: int
    external_attr: int
    disk_start: int
    extra: bytes

    @property
    def mode(self) -> int:
        """Unix mode from the high 16 bits of the external attributes."""
        return self.external_attr >> 16


def corrupt(message: str) -> ArchiveError:
    return ArchiveError("not_a_zip", f"the file is not a readable zip archive: {message}")


def find_end_record(data: bytes) -> tuple[int, tuple[int, ...]]:
    """Locate the end-of-central-directory record; it must end the input."""
    if len(data) < EOCD.size:
        raise corrupt("it is empty or too short" if data else "it is empty")
    pos = data.rfind(EOCD_SIG)
    while pos >= 0 and pos + EOCD.size > len(data):
        pos = data.rfind(EOCD_SIG, 0, pos)
    if pos < 0:
        raise corrupt("no end-of-central-directory record (truncated, or not a zip)")
    fields = EOCD.unpack_from(data, pos)
    comment_len = fields[7]
    if comment_len:
        raise ArchiveError("trailing_data", "the archive has a comment; "
                           "gears carry no data outside their members")
    if pos + EOCD.size != len(data):
        extra = len(data) - pos - EOCD.size
        raise ArchiveError("trailing_data", f"{extra} bytes follow the end of the archive")
    return pos, fields


def read_central_directory(data: bytes, max_files: int) -> tuple[list[Entry], int]:
    """Parse and check the central directory; returns its entries (in order)
    and its offset, which is where the members' local data must end."""
    eocd_pos, (_, disk, cd_disk, n_here, n_total, cd_size, cd_offset, _) = find_end_record(data)
    if 0xFFFF in (disk, cd_disk, n_here, n_total) or 0xFFFFFFFF in (cd_size, cd_offset) or (
        eocd_pos >= 20 and data[eocd_pos - 20:eocd_pos - 16] == ZIP64_LOCATOR_SIG
        and cd_offset + cd_size != eocd_pos
    ):
        raise ArchiveError("unsupported_zip_feature", "zip64 archives are not supported "
                           "(a gear is far below the sizes that need zip64)")
    if disk or cd_disk or n_here != n_total:
        raise ArchiveError("unsupported_zip_feature",
                           "multi-disk (split) archives are not supported")
    if n_total > max_files:
        raise ArchiveError("too_many_files", f"the archive has {n_total} entries; "
                           f"at most {max_files} are allowed")
    cd_start = eocd_pos - cd_size
    if cd_start < 0:
        raise corrupt("the central directory is larger than the file")
    if cd_start != cd_offset:
        if cd_start > cd_offset:
            raise ArchiveError("prepended_data", f"{cd_start - cd_offset} bytes before the "
                               "archive are not part of it (a self-extractor stub or similar)")
        raise corrupt("the central directory offset points past the central directory")
    entries = []
    p = cd_start
    for index in range(n_total):
        entry, p = _parse_central_entry(data, p, eocd_pos, index)
        entries.append(entry)
    if p != eocd_pos:
        raise corrupt("the central directory holds more than its recorded entries")
    return entries, cd_offset


def _parse_central_entry(data: bytes, p: int, end: int, index: int) -> tuple[Entry, int]:
    if p + CENTRAL.size > end or data[p:p + 4] != CENTRAL_SIG:
        raise corrupt(f"central directory entry {index} is damaged")
    (_, made_by, needed, flags, method, _, _, crc, csize, usize, n_len, e_len, c_len,
     disk_start, _, ext_attr, offset) = CENTRAL.unpack_from(data, p)
    name_at = p + CENTRAL.size
    nxt = name_at + n_len + e_len + c_len
    if nxt > end:
        raise corrupt(f"central directory entry {index} runs past the directory")
    raw_name = data[name_at:name_at + n_len]
    extra = data[name_at + n_len:name_at + n_len + e_len]
    entry = Entry(
        index=index, version_needed=needed & 0xFF, raw_name=raw_name,
        name=decode_name(raw_name, flags), flags=flags,
        method=method, crc=crc, compress_size=csize, file_size=usize, header_offset=offset,
        create_system=made_by >> 8, external_attr=ext_attr, disk_start=disk_start, extra=extra,
    )
    return entry, nxt


def decode_name(raw: bytes, flags: int) -> str:
    """Decode a member name. Non-ASCII names must be flagged UTF-8: unflagged
    ones are read as cp437 by some tools and UTF-8 by others."""
    label = ascii(raw)[1:]
    if flags & FLAG_UTF8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ArchiveError("invalid_name", f"{label}: the name is flagged UTF-8 but is not "
                               "valid UTF-8") from None
    if not raw.isascii():
        raise ArchiveError("invalid_name", f"{label}: a non-ASCII name without the UTF-8 "
                           "flag is ambiguous")
    return raw.decode("ascii")


def extra_field_ids(extra: bytes, member: str) -> list[int]:
    """Header ids of an extra field block; a malformed block is refused."""
    ids = []
    p = 0
    while p < len(extra):
        if p + 4 > len(extra):
            raise ArchiveError("header_mismatch", f"{quote(member)}: malformed extra field",
                               member=member)
        hid, size = struct.unpack_from("<2H", extra, p)
        p += 4 + size
        if p > len(extra):
            raise ArchiveError("header_mismatch", f"{quote(member)}: malformed extra field",
                               member=member)
        ids.append(hid)
    return ids


def check_extra(extra: bytes, member: str) -> None:
    """Refuse zip64 extras and alternative Unicode names."""
    for hid in extra_field_ids(extra, member):
        if hid == EXTRA_ZIP64:
            raise ArchiveError("unsupported_zip_feature", f"{quote(member)}: zip64 members "
                               "are not supported", member=member)
        if hid in EXTRA_UNICODE:
            raise ArchiveError("unsupported_zip_feature", f"{quote(member)}: a second "
                               "(Unicode) name in an extra field is not supported", member=member)


def locate_data(data: bytes, entries: list[Entry], cd_offset: int) -> dict[int, int]:
    """Check that the members tile the input before the central directory
    exactly, each local header agreeing with its central entry.

    Returns ``{entry.index: offset of its compressed data}``. Overlapping
    members (one local record claimed by several entries: the overlapping
    zip bomb), gaps and hidden bytes are refused.
    """
    starts: dict[int, int] = {}
    pos = 0
    for e in sorted(entries, key=lambda e: (e.header_offset, e.index)):
        if e.header_offset > pos:
            if pos == 0:
                raise ArchiveError("prepended_data", f"{e.header_offset} bytes before the first "
                                   "member are not part of the archive")
            raise _mismatch(e, f"{e.header_offset - pos} unaccounted bytes precede it")
        if e.header_offset < pos:
            raise _mismatch(e, "its data overlaps another member's")
        starts[e.index], pos = _check_local(data, e, cd_offset)
    if pos != cd_offset:
        raise ArchiveError("header_mismatch", f"{cd_offset - pos} unaccounted bytes precede "
                           "the central directory")
    return starts


def _mismatch(e: Entry, why: str) -> ArchiveError:
    return ArchiveError("header_mismatch", f"{quote(e.name)}: {why}", member=e.name)


def _check_local(data: bytes, e: Entry, limit: int) -> tuple[int, int]:
    off = e.header_offset
    if off + LOCAL.size > limit or data[off:off + 4] != LOCAL_SIG:
        raise _mismatch(e, "there is no local header where the central directory says")
    (_, needed, flags, method, _, _, crc, csize, usize, n_len, e_len) = LOCAL.unpack_from(data, off)
    name_at = off + LOCAL.size
    start = name_at + n_len + e_len
    if data[name_at:name_at + n_len] != e.raw_name:
        raise _mismatch(e, "the local header names a different file")
    if (flags & _SIGNIFICANT_FLAGS) != (e.flags & _SIGNIFICANT_FLAGS) or method != e.method:
        raise _mismatch(e, "the local header's flags or compression method differ")
    if needed & 0xFF > MAX_VERSION_NEEDED:
        raise _mismatch(e, "the local header needs a newer zip version than its central entry")
    recorded = (e.crc, e.compress_size, e.file_size)
    local = (crc, csize, usize)
    if local != recorded and not (flags & FLAG_DESCRIPTOR and local == (0, 0, 0)):
        raise _mismatch(e, "the local header's sizes or CRC differ from the central directory")
    check_extra(data[name_at + n_len:start], e.name)
    end = start + e.compress_size
    if flags & FLAG_DESCRIPTOR:
        if data[end:end + 4] == DESCRIPTOR_SIG:
            end += 4
        if end + DESCRIPTOR.size > limit or DESCRIPTOR.unpack_from(data, end) != recorded:
            raise _mismatch(e, "the data descriptor differs from the central directory")
        end += DESCRIPTOR.size
    if end > limit:
        raise _mismatch(e, "its data runs into the central directory")
    return start, end
