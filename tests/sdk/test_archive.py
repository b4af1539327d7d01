"""The .gear archive: every hostile archive class is refused with its reason
code, valid archives round-trip, and builds are reproducible."""

from __future__ import annotations

import io
import os
import random
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from gears_sdk.archive import (
    FIXED_TIMESTAMP,
    MAX_ARCHIVE_BYTES,
    MAX_FILES,
    REASON_CODES,
    ArchiveLimits,
    ArchiveManifestError,
    build_archive,
    build_archive_bytes,
    collect_files,
    read_archive,
)
from gears_sdk.errors import ArchiveError, ManifestError
from tests.sdk.malicious import (
    ENTRYPOINT,
    MANIFEST,
    Member,
    deflate,
    extra_field,
    gear_zip,
    make_zip,
    manifest_bytes,
    valid_members,
    zipfile_zip,
)

ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 57
SMALL = ArchiveLimits(max_archive_bytes=4096, max_files=4, max_member_bytes=2048,
                      max_total_bytes=3000, max_compression_ratio=10, ratio_min_bytes=512)


def _dup_zip() -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns, then writes it anyway
        return zipfile_zip([*valid_members(), ("hello.py", b"x = 1\n")])


def _zip_with(*extra: tuple[str, bytes], manifest: dict[str, object] | None = None) -> bytes:
    return zipfile_zip([*valid_members(**(manifest or {})), *extra])


def _overlapping() -> bytes:
    # Two more central entries claim the same local record: the overlapping
    # zip bomb multiplies one compressed block into many "files".
    blob = Member("blob.txt", b"a" * 1000)
    members = [Member(n, d) for n, d in valid_members()]
    offset = len(make_zip(members)) - 22 - sum(46 + len(m.raw_name()) for m in members)
    alias = Member("blob2.txt", b"a" * 1000, write_local=False, header_offset=offset)
    return make_zip([*members, blob, alias])


def _lying_size() -> bytes:
    # Declares 10 bytes, inflates to 100 000: the reader must stop at the cap.
    return gear_zip(Member("big.txt", b"z" * 100_000, file_size=10, local={"usize": 10}))


def _sfx_fixed_offsets() -> bytes:
    return gear_zip(prepend=b"MZ" + b"\x00" * 200, shift_offsets=True)


Case = tuple[str, Callable[[], bytes], ArchiveLimits | None]

CASES: list[Case] = [
    ("not_a_zip", lambda: b"", None),
    ("not_a_zip", lambda: b"this is not a zip archive at all, just text" * 3, None),
    ("not_a_zip", lambda: _zip_with()[:-30], None),
    ("archive_too_large", lambda: _zip_with(("pad.txt", os.urandom(5000))), SMALL),
    ("unsupported_zip_feature", lambda: gear_zip(eocd={"disk": 1, "cd_disk": 1}), None),
    ("unsupported_zip_feature", lambda: gear_zip(
        Member("z.txt", b"hi", extra=extra_field(0x0001, b"\x00" * 16))), None),
    ("unsupported_zip_feature", lambda: gear_zip(
        Member("nice.txt", b"hi", extra=extra_field(0x7075, b"\x01\x00\x00\x00\x00../x.py"))),
     None),
    ("unsupported_zip_feature", lambda: gear_zip(eocd={"cd_offset": 0xFFFFFFFF}), None),
    ("unsupported_zip_feature", lambda: gear_zip(Member("p.txt", b"x", flags=0x20)), None),
    ("unsupported_zip_feature", lambda: gear_zip(Member("v.txt", b"x", version_needed=99)), None),
    ("prepended_data", lambda: gear_zip(prepend=b"#!/bin/sh\nexit 0\n"), None),
    ("prepended_data", _sfx_fixed_offsets, None),
    ("trailing_data", lambda: gear_zip(append=b"hidden payload"), None),
    ("trailing_data", lambda: gear_zip(comment=b"a comment"), None),
    ("header_mismatch", lambda: gear_zip(Member("a.txt", b"hi", local={"name": b"b.txt"})), None),
    ("header_mismatch", lambda: gear_zip(Member("a.txt", b"hi", local={"method": 0})), None),
    ("header_mismatch", lambda: gear_zip(Member("a.txt", b"hi", local={"crc": 1})), None),
    ("header_mismatch", lambda: gear_zip(Member("a.txt", b"hi", local={"csize": 99})), None),
    ("header_mismatch", _overlapping, None),
    ("header_mismatch", lambda: gear_zip(between=b"\x00" * 16), None),
    ("header_mismatch", _lying_size, None),
    ("header_mismatch", lambda: gear_zip(Member("a.txt", b"hi", method=0, file_size=5,
                                                local={"usize": 5})), None),
    ("crc_mismatch", lambda: gear_zip(Member("a.txt", b"hello", crc=12345)), None),
    ("encrypted", lambda: gear_zip(Member("secret.py", b"x", flags=0x1)), None),
    ("unsupported_compression", lambda: zipfile_zip(
        valid_members(), compress_type=zipfile.ZIP_LZMA), None),
    ("unsupported_compression", lambda: gear_zip(Member("a.txt", b"x", method=99, payload=b"x")),
     None),
    ("too_many_files", lambda: _zip_with(*[(f"f{i}.txt", b"x") for i in range(5)]), SMALL),
    ("too_many_files", lambda: gear_zip(eocd={"n_here": MAX_FILES + 1,
                                              "n_total": MAX_FILES + 1}), None),
    ("member_too_large", lambda: _zip_with(("big.txt", os.urandom(3000))),
     ArchiveLimits(max_member_bytes=2048)),
    ("total_too_large", lambda: _zip_with(("a.txt", os.urandom(1500)), ("b.txt", os.urandom(1500))),
     ArchiveLimits(max_total_bytes=3000)),
    ("compression_ratio", lambda: _zip_with(("zeros.txt", b"\x00" * 100_000)),
     ArchiveLimits(max_compression_ratio=10, ratio_min_bytes=512)),
    ("path_traversal", lambda: _zip_with(("../evil.py", b"x")), None),
    ("path_traversal", lambda: gear_zip(Member("pkg/../../evil.py", b"x")), None),
    ("absolute_path", lambda: gear_zip(Member("/etc/cron.d/evil", b"x")), None),
    ("backslash", lambda: gear_zip(Member("..\\..\\evil.py", b"x")), None),
    ("drive_letter", lambda: gear_zip(Member("C:/Windows/evil.py", b"x")), None),
    ("drive_letter", lambda: gear_zip(Member("c:evil.py", b"x")), None),
    ("invalid_name", lambda: gear_zip(Member("pkg//a.py", b"x")), None),
    ("invalid_name", lambda: gear_zip(Member("./a.py", b"x")), None),
    ("invalid_name", lambda: gear_zip(Member("con.py", b"x")), None),
    ("invalid_name", lambda: gear_zip(Member("a.py/", b"data in a dir")), None),
    ("invalid_name", lambda: gear_zip(Member(b"caf\x82.py", b"x")), None),
    ("invalid_name", lambda: gear_zip(Member("zero\u200bwidth.py", b"x")), None),
    ("name_too_long", lambda: gear_zip(Member("a" * 300 + ".py", b"x")), None),
    ("path_too_deep", lambda: gear_zip(Member("d/" * 20 + "x.py", b"x")), None),
    ("control_character", lambda: gear_zip(Member("a\nb.py", b"x")), None),
    ("control_character", lambda: gear_zip(Member(b"a\x00.py", b"x")), None),
    ("control_character", lambda: gear_zip(Member("a\x7f.py", b"x")), None),
    ("bidi_character", lambda: gear_zip(Member("invoice\u202efdp.py", b"x")), None),
    ("bidi_character", lambda: gear_zip(Member("a\u2066b.py", b"x")), None),
    ("duplicate_name", _dup_zip, None),
    ("case_collision", lambda: _zip_with(("Hello.py", b"x = 2\n")), None),
    ("case_collision", lambda: _zip_with(("HELLO.PY/x.txt", b"x")), None),
    ("unicode_collision", lambda: _zip_with(("caf\u00e9.txt", b"1"), ("cafe\u0301.txt", b"2")),
     None),
    ("unicode_collision", lambda: _zip_with(("\uff46ile.txt", b"1"), ("file.txt", b"2")), None),
    ("link", lambda: gear_zip(Member("link.py", b"/etc/passwd", method=0,
                                     external_attr=(stat.S_IFLNK | 0o777) << 16)), None),
    ("special_file", lambda: gear_zip(Member("fifo", b"", external_attr=(stat.S_IFIFO | 0o644) << 16)),
     None),
    ("special_file", lambda: gear_zip(Member("dev", b"", external_attr=(stat.S_IFCHR | 0o644) << 16)),
     None),
    ("nested_archive", lambda: _zip_with(("inner.zip", b"not even a zip")), None),
    ("nested_archive", lambda: _zip_with(("payload.tar.gz", b"x")), None),
    ("nested_archive", lambda: _zip_with(("data.bin", zipfile_zip([("a", b"b")]))), None),
    ("nested_archive", lambda: _zip_with(("notes.txt", b"\x1f\x8b\x08\x00rest")), None),
    ("nested_archive", lambda: _zip_with(("x.dat", b"\xfd7zXZ\x00rest")), None),
    ("native_code", lambda: _zip_with(("_speedups.so", b"x")), None),
    ("native_code", lambda: _zip_with(("ext.cpython-311-x86_64-linux-gnu.so.1", b"x")), None),
    ("native_code", lambda: _zip_with(("helper.PYD", b"x")), None),
    ("native_code", lambda: _zip_with(("data.bin", ELF)), None),
    ("native_code", lambda: _zip_with(("img.png", b"\xcf\xfa\xed\xfe" + b"\x00" * 28)), None),
    ("native_code", lambda: _zip_with(("a.txt", b"MZ" + b"\x00" * 58 + struct.pack("<L", 64)
                                        + b"PE\x00\x00")), None),
    ("bytecode", lambda: _zip_with(("hello.pyc", b"x")), None),
    ("bytecode", lambda: _zip_with(("__pycache__/hello.py", b"x")), None),
    ("pth_file", lambda: _zip_with(("evil.pth", b"import os\n")), None),
    ("sitecustomize", lambda: _zip_with(("sitecustomize.py", b"x")), None),
    ("sitecustomize", lambda: _zip_with(("lib/usercustomize.py", b"x")), None),
    ("sitecustomize", lambda: _zip_with(("sitecustomize/__init__.py", b"x")), None),
    ("missing_manifest", lambda: zipfile_zip([("hello.py", b"x")]), None),
    ("missing_manifest", lambda: zipfile_zip([("sub/gear.json", manifest_bytes())]), None),
    ("missing_manifest", lambda: make_zip([]), None),
    ("manifest_too_large", lambda: zipfile_zip([("gear.json", b" " * 70_000)]), None),
    ("invalid_manifest", lambda: zipfile_zip([("gear.json", b"{}")]), None),
    ("invalid_manifest", lambda: zipfile_zip([("gear.json", b"\xff not json")]), None),
    ("entrypoint_missing", lambda: zipfile_zip([("gear.json", manifest_bytes())]), None),
    ("entrypoint_missing", lambda: _zip_with(manifest={"entrypoint": "pkg.sub"}), None),
    ("readme_missing", lambda: _zip_with(manifest={"readme": "README.md"}), None),
]


@pytest.mark.parametrize(
    ("code", "make", "limits"), CASES, ids=[f"{c}-{i}" for i, (c, _, _) in enumerate(CASES)]
)
def test_hostile_archive_is_refused_with_its_code(
    code: str, make: Callable[[], bytes], limits: ArchiveLimits | None
) -> None:
    with pytest.raises(ArchiveError) as info:
        read_archive(make(), limits=limits)
    assert info.value.code == code, info.value.message
    assert info.value.message


def test_every_reason_code_has_a_case() -> None:
    assert {c for c, _, _ in CASES} == set(REASON_CODES)


def test_hostile_names_are_quoted_safely_in_messages() -> None:
    with pytest.raises(ArchiveError) as info:
        read_archive(gear_zip(Member("invoice\u202efdp.py\n", b"x")))
    assert info.value.member == "invoice\u202efdp.py\n"
    assert info.value.message.isascii() and "\n" not in info.value.message


def test_invalid_manifest_keeps_the_problems() -> None:
    with pytest.raises(ArchiveManifestError) as info:
        read_archive(zipfile_zip([("gear.json", manifest_bytes(kind="robot")), ("hello.py", b"")]))
    assert info.value.code == "invalid_manifest"
    assert [p.path for p in info.value.problems] == ["$.kind"]


def test_input_cap_is_checked_before_parsing(tmp_path: Path) -> None:
    huge = tmp_path / "huge.gear"
    with huge.open("wb") as fh:
        fh.truncate(MAX_ARCHIVE_BYTES + 1)
    with pytest.raises(ArchiveError) as info:
        read_archive(huge)
    assert info.value.code == "archive_too_large"
    with pytest.raises(ArchiveError) as info, huge.open("rb") as fh:
        read_archive(fh)
    assert info.value.code == "archive_too_large"


def test_directory_path_is_not_an_archive(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError) as info:
        read_archive(tmp_path)
    assert info.value.code == "not_a_zip"


# ---------------------------------------------------------------------------
# archives other tools write are accepted
# ---------------------------------------------------------------------------


def test_data_descriptors_and_directory_entries_are_accepted() -> None:
    class Unseekable(io.RawIOBase):
        def __init__(self) -> None:
            self.buf = bytearray()

        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:  # type: ignore[override]
            self.buf += b
            return len(b)

    sink = Unseekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.mkdir("pkg")
        for name, data in valid_members():
            zf.writestr(name, data)
    archive = read_archive(bytes(sink.buf))
    assert archive.names == ("gear.json", "hello.py")
    assert zipfile.ZipFile(io.BytesIO(bytes(sink.buf))).infolist()[1].flag_bits & 0x8


def test_hand_made_descriptor_and_stored_members_are_accepted() -> None:
    archive = read_archive(gear_zip(Member("notes/a.txt", b"stored", method=0),
                                    Member("notes/b.txt", b"described", descriptor=True),
                                    Member("caf\u00e9.txt", b"utf-8 name")))
    assert archive.read("notes/b.txt") == b"described"
    assert "caf\u00e9.txt" in archive.names


def test_descriptor_must_agree() -> None:
    data = gear_zip(Member("b.txt", b"described", descriptor=True))
    bad = data.replace(b"PK\x07\x08", b"PK\x07\x08\x00\x00\x00\x00", 1)
    with pytest.raises(ArchiveError):
        read_archive(bad)


# ---------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------


@pytest.fixture
def gear_dir(tmp_path: Path) -> Path:
    src = tmp_path / "hello-gear"
    (src / "hello" / "templates").mkdir(parents=True)
    (src / "gear.json").write_bytes(manifest_bytes(readme="README.md"))
    (src / "hello" / "__init__.py").write_text(ENTRYPOINT)
    (src / "hello" / "templates" / "card.html").write_text("<p>{{ name }}</p>\n")
    (src / "README.md").write_text("# Hello\n\nRenders a greeting.\n")
    return src


def test_valid_archive_round_trips(gear_dir: Path, tmp_path: Path) -> None:
    built = build_archive(gear_dir)
    assert built.path == gear_dir / "dist" / "acme-hello-1.0.0.gear"
    assert built.files == ("README.md", "gear.json", "hello/__init__.py", "hello/templates/card.html")
    for source in (built.path, str(built.path), built.path.read_bytes(), built.path.open("rb")):
        archive = read_archive(source)
        assert archive.sha256 == built.sha256 and archive.size == built.size
    assert archive.manifest.name == "acme/hello" and str(archive.manifest.version) == "1.0.0"
    assert archive.names == built.files
    assert archive.read("hello/__init__.py") == ENTRYPOINT.encode()
    assert archive.readme() == "# Hello\n\nRenders a greeting.\n"
    hashes = archive.file_hashes()
    assert set(hashes) == set(built.files) and all(len(h) == 64 for h in hashes.values())
    with pytest.raises(KeyError):
        archive.read("nope.py")

    dest = tmp_path / "unpacked"
    archive.extract_to(dest, read_only=True)
    assert (dest / "hello" / "templates" / "card.html").read_text() == "<p>{{ name }}</p>\n"
    assert stat.S_IMODE((dest / "gear.json").stat().st_mode) == 0o444
    assert stat.S_IMODE((dest / "hello").stat().st_mode) == 0o555
    for d in (dest, dest / "hello", dest / "hello" / "templates"):
        d.chmod(0o755)
    with pytest.raises(FileExistsError):
        archive.extract_to(dest)


def test_built_members_are_canonical(gear_dir: Path) -> None:
    data, manifest = build_archive_bytes(gear_dir)
    assert manifest.name == "acme/hello"
    infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    for info in infos:
        assert info.date_time == FIXED_TIMESTAMP
        assert info.external_attr >> 16 == stat.S_IFREG | 0o644
        assert info.create_system == 3 and info.compress_type == zipfile.ZIP_DEFLATED
        assert info.extra == b"" and not info.is_dir()


def test_build_is_reproducible(gear_dir: Path, tmp_path: Path) -> None:
    first = build_archive(gear_dir, tmp_path / "one")
    for path in gear_dir.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))
        if path.is_file():
            path.chmod(0o600)
    second = build_archive(gear_dir, tmp_path / "two")
    assert first.sha256 == second.sha256
    assert first.path.read_bytes() == second.path.read_bytes()
    assert build_archive_bytes(gear_dir)[0] == first.path.read_bytes()


def test_builder_exclusions(gear_dir: Path) -> None:
    for junk in (".git/config", ".env", "hello/__pycache__/x.cpython-311.pyc", "hello/old.pyc",
                 "hello/old.pyo", "dist/acme-hello-0.9.0.gear", "build/lib/x.py", "tests/test_x.py",
                 "hello.egg-info/PKG-INFO", "other.gear", "hello/.hidden.py"):
        (gear_dir / junk).parent.mkdir(parents=True, exist_ok=True)
        (gear_dir / junk).write_bytes(b"x")
    (gear_dir / "hello" / "tests").mkdir()
    (gear_dir / "hello" / "tests" / "helpers.py").write_text("")
    assert collect_files(gear_dir) == [
        "README.md", "gear.json", "hello/__init__.py", "hello/templates/card.html",
        "hello/tests/helpers.py",
    ]
    assert build_archive(gear_dir).files == tuple(collect_files(gear_dir))


@pytest.mark.parametrize(
    ("code", "prepare"),
    [
        ("link", lambda d: (d / "hello" / "link.py").symlink_to(d / "hello" / "__init__.py")),
        ("link", lambda d: (d / "shared").symlink_to(d / "hello")),
        ("special_file", lambda d: os.mkfifo(d / "pipe")),
        ("native_code", lambda d: (d / "hello" / "_fast.so").write_bytes(b"x")),
        ("native_code", lambda d: (d / "hello" / "blob.bin").write_bytes(ELF)),
        ("pth_file", lambda d: (d / "evil.pth").write_text("import os\n")),
        ("sitecustomize", lambda d: (d / "sitecustomize.py").write_text("")),
        ("nested_archive", lambda d: (d / "vendor.zip").write_bytes(b"x")),
        ("entrypoint_missing", lambda d: (d / "hello" / "__init__.py").rename(d / "other.py")),
        ("readme_missing", lambda d: (d / "README.md").unlink()),
        ("case_collision", lambda d: (d / "readme.md").write_text("x")),
        ("member_too_large", lambda d: (d / "big.txt").write_bytes(b"x" * 3000)),
        ("too_many_files", lambda d: [(d / f"f{i}.txt").write_text("") for i in range(5)]),
    ],
)
def test_builder_refuses_what_the_reader_refuses(
    gear_dir: Path, code: str, prepare: Callable[[Path], object]
) -> None:
    prepare(gear_dir)
    limits = ArchiveLimits(max_member_bytes=2048, max_files=6)
    with pytest.raises(ArchiveError) as info:
        build_archive(gear_dir, limits=limits)
    assert info.value.code == code, info.value.message
    assert not (gear_dir / "dist").exists()


def test_builder_validates_the_manifest_first(gear_dir: Path) -> None:
    (gear_dir / "gear.json").write_bytes(manifest_bytes(version="1.0"))
    (gear_dir / "evil.pth").write_text("")
    with pytest.raises(ManifestError) as info:
        build_archive(gear_dir)
    assert [p.path for p in info.value.problems] == ["$.version"]


def test_dotted_entrypoint_maps_to_directories(gear_dir: Path) -> None:
    (gear_dir / "gear.json").write_bytes(manifest_bytes(entrypoint="hello.render",
                                                        readme="README.md"))
    with pytest.raises(ArchiveError, match=r"hello/render\.py"):
        build_archive(gear_dir)
    (gear_dir / "hello" / "render.py").write_text(ENTRYPOINT)
    assert read_archive(build_archive(gear_dir).path).manifest.entrypoint == "hello.render"


def test_manifest_fields_are_the_ones_the_test_gear_uses() -> None:
    assert MANIFEST["kind"] == "template" and MANIFEST["hooks"] == ["gear_render"]
    assert deflate(b"") and read_archive(gear_zip()).names == ("gear.json", "hello.py")


def test_archives_from_plain_zipfile_are_accepted() -> None:
    archive = read_archive(zipfile_zip([*valid_members(), ("pkg/data.json", b"{}")]))
    assert archive.names == ("gear.json", "hello.py", "pkg/data.json")


def test_damaged_archives_only_ever_raise_archive_error() -> None:
    """Random byte flips and truncations: refused with a code, never a crash."""
    rng = random.Random(20240501)
    good = gear_zip(Member("notes.txt", b"some text " * 20), Member("raw.txt", b"x", method=0))
    codes = set()
    for _ in range(1500):
        data = bytearray(good)
        if rng.random() < 0.2:
            data = data[: rng.randrange(len(data))]
        for _ in range(rng.randint(1, 4)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            read_archive(bytes(data))
        except ArchiveError as exc:
            assert exc.code in REASON_CODES
            codes.add(exc.code)
    assert {"not_a_zip", "header_mismatch", "crc_mismatch"} <= codes
