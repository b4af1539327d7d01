"""A corpus of hostile and broken uploads: archives and manifests the registry must refuse.

Each :class:`BadUpload` says how to make the bytes and what the registry must
answer: the HTTP status, the error ``code`` and, where it matters, the code of
the first detail (an archive reason code or a manifest problem code). The
archive classes reuse the hand-made zips of :mod:`tests.sdk.malicious`; the
manifest cases put one raw ``gear.json`` into an otherwise valid archive.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.sdk.malicious import (
    ENTRYPOINT,
    MANIFEST,
    Member,
    extra_field,
    gear_zip,
    make_zip,
    manifest_bytes,
    zipfile_zip,
)


@dataclass(frozen=True)
class BadUpload:
    id: str
    make: Callable[[], bytes]
    status: int
    code: str
    detail: str | None = None  # the first detail's code, when it is stable
    token: str = "dev"  # which token sends it: "dev" (publish:acme) or "admin"


def with_manifest(raw: bytes | str) -> bytes:
    """A valid template gear whose gear.json is exactly ``raw``."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    return make_zip([Member("gear.json", raw), Member("hello.py", ENTRYPOINT.encode())])


def manifest(**changes: Any) -> Callable[[], bytes]:
    """A gear whose manifest is the valid one with ``changes`` (``None`` removes a field)."""
    return lambda: with_manifest(manifest_bytes(**changes))


def raw(text: bytes | str) -> Callable[[], bytes]:
    return lambda: with_manifest(text)


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "object"}
    for _ in range(depth):
        node = {"type": "object", "properties": {"x": node}}
    return node


def _big_manifest() -> bytes:
    # Valid JSON, well-formed fields, just over the 64 KiB limit by whitespace.
    return json.dumps(MANIFEST).encode()[:-1] + b" " * (64 * 1024) + b"}"


def _duplicate_name() -> bytes:
    body = json.dumps({**MANIFEST, "name": "acme/hello"})[:-1]
    return (body + ', "name": "globex/hello"}').encode()


def _deep_json() -> bytes:
    # Deeper than the validator's limit and than a naive recursive parser likes,
    # yet small enough to pass the size check.
    return (b'{"config_schema": ' + b'[' * 20_000 + b']' * 20_000 + b"}")


INVALID = (422, "invalid_manifest")
ARCHIVE = (400, "invalid_archive")
REG = (stat.S_IFREG | 0o644) << 16

ARCHIVE_CASES: list[BadUpload] = [
    BadUpload("not-a-zip", lambda: b"this is not a zip file at all", *ARCHIVE, "not_a_zip"),
    BadUpload("truncated-zip", lambda: gear_zip()[:-30], *ARCHIVE),
    BadUpload("prepended-stub", lambda: gear_zip(prepend=b"#!/bin/sh\nexit 0\n"), *ARCHIVE,
              "prepended_data"),
    BadUpload("trailing-data", lambda: gear_zip(append=b"hidden payload"), *ARCHIVE,
              "trailing_data"),
    BadUpload("archive-comment", lambda: gear_zip(comment=b"a comment"), *ARCHIVE, "trailing_data"),
    BadUpload("multi-disk", lambda: gear_zip(eocd={"disk": 1, "cd_disk": 1}), *ARCHIVE,
              "unsupported_zip_feature"),
    BadUpload("zip64-extra", lambda: gear_zip(
        Member("z.txt", b"hi", extra=extra_field(0x0001, b"\x00" * 16))), *ARCHIVE,
        "unsupported_zip_feature"),
    BadUpload("local-name-differs", lambda: gear_zip(
        Member("a.txt", b"hi", local={"name": b"b.txt"})), *ARCHIVE, "header_mismatch"),
    BadUpload("crc-lies", lambda: gear_zip(Member("a.txt", b"hello", crc=12345)), *ARCHIVE,
              "crc_mismatch"),
    BadUpload("encrypted", lambda: gear_zip(Member("secret.py", b"x", flags=0x1)), *ARCHIVE,
              "encrypted"),
    BadUpload("unknown-compression", lambda: gear_zip(
        Member("a.txt", b"x", method=99, payload=b"x")), *ARCHIVE, "unsupported_compression"),
    BadUpload("size-lies", lambda: gear_zip(
        Member("big.txt", b"z" * 100_000, file_size=10, local={"usize": 10})), *ARCHIVE),
    BadUpload("compression-bomb", lambda: gear_zip(Member("bomb.txt", b"\0" * (1024 * 1024))),
              *ARCHIVE, "compression_ratio"),
    BadUpload("dotdot", lambda: gear_zip(Member("../evil.py", b"x")), *ARCHIVE, "path_traversal"),
    BadUpload("inner-dotdot", lambda: gear_zip(Member("pkg/../../evil.py", b"x")), *ARCHIVE,
              "path_traversal"),
    BadUpload("absolute", lambda: gear_zip(Member("/etc/cron.d/evil", b"x")), *ARCHIVE,
              "absolute_path"),
    BadUpload("backslash", lambda: gear_zip(Member("..\\..\\evil.py", b"x")), *ARCHIVE,
              "backslash"),
    BadUpload("drive-letter", lambda: gear_zip(Member("C:/Windows/evil.py", b"x")), *ARCHIVE,
              "drive_letter"),
    BadUpload("zero-width-member", lambda: gear_zip(Member("zero\u200bwidth.py", b"x")), *ARCHIVE,
              "invalid_name"),
    BadUpload("long-name", lambda: gear_zip(Member("a" * 300 + ".py", b"x")), *ARCHIVE,
              "name_too_long"),
    BadUpload("deep-path", lambda: gear_zip(Member("d/" * 20 + "x.py", b"x")), *ARCHIVE,
              "path_too_deep"),
    BadUpload("newline-in-name", lambda: gear_zip(Member("a\nb.py", b"x")), *ARCHIVE,
              "control_character"),
    BadUpload("nul-in-name", lambda: gear_zip(Member(b"a\x00.py", b"x")), *ARCHIVE,
              "control_character"),
    BadUpload("rtl-override-member", lambda: gear_zip(Member("invoice\u202efdp.py", b"x")),
              *ARCHIVE, "bidi_character"),
    BadUpload("duplicate-member", lambda: gear_zip(Member("hello.py", b"x = 2\n")), *ARCHIVE,
              "duplicate_name"),
    BadUpload("case-collision", lambda: gear_zip(Member("HELLO.py", b"x")), *ARCHIVE,
              "case_collision"),
    BadUpload("unicode-collision", lambda: gear_zip(Member("caf\u00e9.txt", b"1"),
                                                    Member("cafe\u0301.txt", b"2")), *ARCHIVE,
              "unicode_collision"),
    BadUpload("symlink", lambda: gear_zip(Member("link.py", b"/etc/passwd", method=0,
                                                 external_attr=(stat.S_IFLNK | 0o777) << 16)),
              *ARCHIVE, "link"),
    BadUpload("fifo", lambda: gear_zip(Member("fifo", b"", external_attr=(stat.S_IFIFO | 0o644) << 16)),
              *ARCHIVE, "special_file"),
    BadUpload("nested-zip", lambda: gear_zip(Member("data.bin", zipfile_zip([("a", b"b")]))),
              *ARCHIVE, "nested_archive"),
    BadUpload("native-code", lambda: gear_zip(Member("_speedups.so", b"\x7fELF")), *ARCHIVE,
              "native_code"),
    BadUpload("bytecode", lambda: gear_zip(Member("hello.pyc", b"x")), *ARCHIVE, "bytecode"),
    BadUpload("pth-file", lambda: gear_zip(Member("evil.pth", b"import os")), *ARCHIVE, "pth_file"),
    BadUpload("sitecustomize", lambda: gear_zip(Member("sitecustomize.py", b"x")), *ARCHIVE,
              "sitecustomize"),
    BadUpload("no-manifest", lambda: zipfile_zip([("hello.py", b"x")]), *ARCHIVE,
              "missing_manifest"),
    BadUpload("manifest-in-subdir", lambda: zipfile_zip([("sub/gear.json", manifest_bytes())]),
              *ARCHIVE, "missing_manifest"),
    BadUpload("empty-zip", lambda: make_zip([]), *ARCHIVE, "missing_manifest"),
    BadUpload("no-entrypoint", lambda: zipfile_zip([("gear.json", manifest_bytes())]), *ARCHIVE,
              "entrypoint_missing"),
    BadUpload("manifest-64k", lambda: with_manifest(_big_manifest()), *ARCHIVE,
              "manifest_too_large"),
    BadUpload("empty-upload", lambda: b"", 400, "missing_file"),
]

MANIFEST_CASES: list[BadUpload] = [
    # encodings and JSON itself
    BadUpload("not-utf8", raw(b'{"name": "acme/h\xe9llo"}'), *INVALID, "encoding"),
    BadUpload("utf16", raw(json.dumps(MANIFEST).encode("utf-16")), *INVALID, "encoding"),
    BadUpload("bom", raw(b"\xef\xbb\xbf" + manifest_bytes()), *INVALID, "json"),
    BadUpload("duplicate-keys", lambda: with_manifest(_duplicate_name()), *INVALID, "duplicate_key"),
    BadUpload("nan", raw(manifest_bytes().replace(b'"engine"', b'"x": NaN, "engine"')), *INVALID,
              "json"),
    BadUpload("infinity", raw(manifest_bytes().replace(b"{", b'{"limits": {"memory_mb": Infinity},', 1)),
              *INVALID, "json"),
    BadUpload("minus-infinity", raw(b'{"limits": {"timeout_ms": -Infinity}}'), *INVALID, "json"),
    BadUpload("trailing-garbage", raw(manifest_bytes() + b" }"), *INVALID, "json"),
    BadUpload("truncated-json", raw(manifest_bytes()[:-5]), *INVALID, "json"),
    BadUpload("json-array", raw(b"[]"), *INVALID),
    BadUpload("json-string", raw(b'"acme/hello"'), *INVALID),
    BadUpload("json-null", raw(b"null"), *INVALID),
    BadUpload("empty-manifest", raw(b""), *INVALID, "json"),
    BadUpload("deep-nesting", raw(_deep_json()), *INVALID),
    BadUpload("deep-config-schema", manifest(config_schema=_nested(40)), *INVALID),
    BadUpload("huge-integer", raw(manifest_bytes().replace(b"{", b'{"limits": {"memory_mb": '
                                                           + b"9" * 5000 + b"},", 1)), *INVALID),
    BadUpload("big-integer", manifest(limits={"memory_mb": 10**30}), *INVALID, "schema.maximum"),
    BadUpload("float-limit", manifest(limits={"timeout_ms": 1.5}), *INVALID, "schema.type"),
    BadUpload("negative-limit", manifest(limits={"timeout_ms": -1}), *INVALID, "schema.minimum"),
    BadUpload("huge-title", manifest(title="T" * 50_000), *INVALID, "schema.maxLength"),
    BadUpload("empty-title", manifest(title=""), *INVALID, "schema.minLength"),
    # wrong types and missing fields
    BadUpload("version-number", manifest(version=1), *INVALID, "schema.type"),
    BadUpload("hooks-string", manifest(hooks="gear_render"), *INVALID, "schema.type"),
    BadUpload("name-null", manifest(name=None), *INVALID, "schema.required"),
    BadUpload("kind-number", manifest(kind=5), *INVALID),
    BadUpload("permissions-list", manifest(permissions=["network"]), *INVALID, "schema.type"),
    BadUpload("unknown-field", manifest(postinstall="rm -rf /"), *INVALID,
              "schema.additionalProperties"),
    # kinds, hooks, versions, ranges
    BadUpload("unknown-kind", manifest(kind="widget"), *INVALID, "schema.enum"),
    BadUpload("unknown-hook", manifest(hooks=["gear_render", "gear_pwn"]), *INVALID, "hooks"),
    BadUpload("hook-of-other-kind", manifest(hooks=["gear_render", "gear_read"]), *INVALID, "hooks"),
    BadUpload("short-version", manifest(version="1.2"), *INVALID, "version"),
    BadUpload("leading-zero-version", manifest(version="01.2.3"), *INVALID, "version"),
    BadUpload("v-prefix-version", manifest(version="v1.2.3"), *INVALID, "version"),
    BadUpload("bad-range", manifest(engine=">=1.0.0 <<2"), *INVALID, "range"),
    BadUpload("empty-or-range", manifest(engine="^1.0.0 ||| ^2"), *INVALID, "range"),
    BadUpload("bad-requires-range", manifest(requires={"acme/base": "^^1"}), *INVALID, "range"),
    BadUpload("requires-self", manifest(requires={"acme/hello": "^1.0.0"}), *INVALID, "requires"),
    BadUpload("requires-bad-name", manifest(requires={"../etc": "^1.0.0"}), *INVALID),
    # names: look-alikes, Unicode tricks, reserved
    BadUpload("cyrillic-a", manifest(name="\u0430cme/hello"), *INVALID, "schema.pattern"),
    BadUpload("fullwidth", manifest(name="\uff41cme/hello"), *INVALID, "schema.pattern"),
    BadUpload("zero-width-joiner", manifest(name="ac\u200dme/hello"), *INVALID, "schema.pattern"),
    BadUpload("rtl-override-name", manifest(name="acme/\u202eolleh"), *INVALID, "schema.pattern"),
    BadUpload("trailing-newline-name", manifest(name="acme/hello\n"), *INVALID, "schema.pattern"),
    BadUpload("uppercase-name", manifest(name="Acme/Hello"), *INVALID, "schema.pattern"),
    BadUpload("no-namespace", manifest(name="hello"), *INVALID, "schema.pattern"),
    BadUpload("reserved-admin", manifest(name="admin/hello"), 422, "reserved_name", token="admin"),
    BadUpload("reserved-api", manifest(name="api/hello"), 422, "reserved_name", token="admin"),
    BadUpload("reserved-gears", manifest(name="gears/hello"), 422, "reserved_name"),
    BadUpload("foreign-namespace", manifest(name="globex/hello"), 403, "forbidden"),
    # fields that reach files, hosts and pages
    BadUpload("entrypoint-path", manifest(entrypoint="../hello"), *INVALID, "schema.pattern"),
    BadUpload("readme-absolute", manifest(readme="/etc/passwd"), *INVALID, "schema.pattern"),
    BadUpload("readme-missing", manifest(readme="NOPE.md"), *ARCHIVE, "readme_missing"),
    BadUpload("network-ip-trailing-newline", manifest(permissions={"network": ["evil.example\n"]}),
              *INVALID, "schema.pattern"),
    BadUpload("network-url", manifest(permissions={"network": ["https://evil.example/"]}),
              *INVALID, "schema.pattern"),
    BadUpload("profile-write-anything", manifest(permissions={"profile": {"write": ["*"]}}),
              *INVALID, "schema.pattern"),
    BadUpload("homepage-javascript", manifest(homepage="javascript:alert(1)"), *INVALID,
              "schema.pattern"),
    BadUpload("category-markup", manifest(categories=["<script>"]), *INVALID, "schema.pattern"),
    BadUpload("config-schema-invalid", manifest(config_schema={"type": "nope"}), *INVALID,
              "config_schema"),
    BadUpload("config-schema-root-array", manifest(config_schema={"type": "array"}), *INVALID,
              "config_schema"),
    BadUpload("config-default-mismatch", manifest(config_schema={
        "type": "object", "properties": {"n": {"type": "integer", "default": "ten"}}}), *INVALID,
        "config_schema"),
]

CASES = ARCHIVE_CASES + MANIFEST_CASES
