"""Hand-made zip archives, byte by byte, for the archive reader's tests.

:mod:`zipfile` only writes well-formed archives; hostile ones (lying local
headers, overlapping members, stubs before the archive, zip64 markers, odd
modes and flags) are assembled here with :mod:`struct`, one field at a time.
"""

from __future__ import annotations

import io
import json
import stat
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

LOCAL = struct.Struct("<4s5H3L2H")
CENTRAL = struct.Struct("<4s6H3L5H2L")
EOCD = struct.Struct("<4s4H2LH")
DOS_DATE_1980 = 0x21  # 1980-01-01
REGULAR = (stat.S_IFREG | 0o644) << 16

MANIFEST = {
    "name": "acme/hello",
    "version": "1.0.0",
    "kind": "template",
    "title": "Hello",
    "summary": "Renders a greeting.",
    "entrypoint": "hello",
    "hooks": ["gear_render"],
    "engine": ">=1.0.0 <2.0.0",
}
ENTRYPOINT = (
    "from gears_sdk import hookimpl\n\n\n"
    "@hookimpl\n"
    "def gear_render(profile, content, config, ctx):\n"
    "    return {'html': '<p>hello</p>'}\n"
)


def manifest_bytes(**changes: object) -> bytes:
    data = {**MANIFEST, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not None}, indent=2).encode()


def valid_members(**manifest_changes: object) -> list[tuple[str, bytes]]:
    """(name, data) of a minimal valid template gear."""
    return [("gear.json", manifest_bytes(**manifest_changes)), ("hello.py", ENTRYPOINT.encode())]


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


@dataclass
class Member:
    """One member; every field the central directory or local header records
    can be overridden to disagree with the truth."""

    name: str | bytes
    data: bytes = b""
    method: int = 8
    flags: int | None = None
    external_attr: int = REGULAR
    create_system: int = 3
    payload: bytes | None = None  # the stored bytes; default: data, deflated if method 8
    crc: int | None = None
    compress_size: int | None = None
    file_size: int | None = None
    extra: bytes = b""
    local_extra: bytes = b""
    disk_start: int = 0
    version_needed: int = 20
    descriptor: bool = False
    header_offset: int | None = None  # central offset; default: where the local header is
    write_local: bool = True
    local: dict[str, Any] = field(default_factory=dict)  # overrides of local fields

    def raw_name(self) -> bytes:
        return self.name if isinstance(self.name, bytes) else self.name.encode("utf-8")

    def the_flags(self) -> int:
        if self.flags is not None:
            return self.flags
        utf8 = isinstance(self.name, str) and not self.name.isascii()
        return (0x800 if utf8 else 0) | (0x8 if self.descriptor else 0)

    def the_payload(self) -> bytes:
        if self.payload is not None:
            return self.payload
        return deflate(self.data) if self.method == 8 else self.data


def extra_field(header_id: int, body: bytes = b"") -> bytes:
    return struct.pack("<2H", header_id, len(body)) + body


def make_zip(
    members: list[Member],
    *,
    prepend: bytes = b"",
    shift_offsets: bool = False,
    between: bytes = b"",
    append: bytes = b"",
    comment: bytes = b"",
    eocd: dict[str, int] | None = None,
) -> bytes:
    """Assemble an archive. ``prepend`` puts bytes before it (with
    ``shift_offsets`` the offsets account for them, as ``zip -A`` does);
    ``between`` goes between the last member and the central directory;
    ``eocd`` overrides fields of the end record."""
    out = bytearray(prepend)
    base = 0 if shift_offsets else len(prepend)
    central = bytearray()
    for m in members:
        payload = m.the_payload()
        name = m.raw_name()
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        csize = len(payload) if m.compress_size is None else m.compress_size
        usize = len(m.data) if m.file_size is None else m.file_size
        flags = m.the_flags()
        offset = len(out) - base
        if m.write_local:
            lf: dict[str, Any] = {"flags": flags, "method": m.method, "crc": crc, "csize": csize,
                  "usize": usize, "name": name, **m.local}
            if m.descriptor and "crc" not in m.local:
                lf.update(crc=0, csize=0, usize=0)
            lname = lf["name"]
            out += LOCAL.pack(b"PK\x03\x04", 20, lf["flags"], lf["method"], 0, DOS_DATE_1980,
                              lf["crc"], lf["csize"], lf["usize"], len(lname), len(m.local_extra))
            out += lname + m.local_extra + payload
            if m.descriptor:
                out += b"PK\x07\x08" + struct.pack("<3L", crc, csize, usize)
        hdr = offset if m.header_offset is None else m.header_offset
        central += CENTRAL.pack(b"PK\x01\x02", (m.create_system << 8) | 20, m.version_needed,
                                flags, m.method,
                                0, DOS_DATE_1980, crc, csize, usize, len(name), len(m.extra), 0,
                                m.disk_start, 0, m.external_attr, hdr)
        central += name + m.extra
    out += between
    cd_offset = len(out) - base
    out += central
    f = {"disk": 0, "cd_disk": 0, "n_here": len(members), "n_total": len(members),
         "cd_size": len(central), "cd_offset": cd_offset, **(eocd or {})}
    out += EOCD.pack(b"PK\x05\x06", f["disk"], f["cd_disk"], f["n_here"], f["n_total"],
                     f["cd_size"], f["cd_offset"], len(comment))
    out += comment + append
    return bytes(out)


def gear_zip(*extra: Member, manifest: dict[str, object] | None = None, **kw: Any) -> bytes:
    """A valid gear's members, then ``extra`` ones, assembled by :func:`make_zip`."""
    members = [Member(n, d) for n, d in valid_members(**(manifest or {}))]
    return make_zip([*members, *extra], **kw)


def zipfile_zip(members: Sequence[tuple[str | zipfile.ZipInfo, bytes]], **kw: Any) -> bytes:
    """An archive written by :mod:`zipfile` itself (``kw`` go to ``writestr``)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data, **kw)
    return buf.getvalue()
