"""Property tests (hypothesis) of the three parsers every upload goes through: the manifest
validator, the version-range matcher and the archive reader.

Runs are derandomized and bounded, so CI sees the same examples every time;
set ``GEARS_HYPOTHESIS_EXAMPLES`` to search longer locally.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gears_sdk.archive import ArchiveLimits, read_archive
from gears_sdk.errors import ArchiveError, ManifestError, Problem, RangeError
from gears_sdk.hookspecs import KIND_HOOKS
from gears_sdk.manifest import (
    load_manifest,
    manifest_schema,
    parse_manifest_bytes,
    validate_manifest,
)
from gears_sdk.versions import Version, parse_range
from tests.sdk.malicious import gear_zip, zipfile_zip

EXAMPLES = int(os.environ.get("GEARS_HYPOTHESIS_EXAMPLES", "150"))
CI = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# -- strategies ---------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=20,
)
slug = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?\Z", fullmatch=True)
nums = st.integers(min_value=0, max_value=50)
versions = st.builds(lambda a, b, c: f"{a}.{b}.{c}", nums, nums, nums)
prerelease = st.from_regex(r"\A(?:alpha|beta|rc)(?:\.[1-9][0-9]?)?\Z", fullmatch=True)


@st.composite
def valid_manifests(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(KIND_HOOKS)))
    required = {"connector": ["gear_check", "gear_streams", "gear_read"],
                "extension": ["gear_on_event"], "template": ["gear_render"]}[kind]
    extra = draw(st.lists(st.sampled_from(sorted(KIND_HOOKS[kind])), max_size=3))
    data: dict[str, Any] = {
        "name": f"{draw(slug)}/{draw(slug)}",
        "version": draw(versions),
        "kind": kind,
        "title": draw(st.text(min_size=1, max_size=80)),
        "summary": draw(st.text(min_size=1, max_size=200)),
        "entrypoint": draw(st.from_regex(r"\A[a-z_][a-z0-9_]{0,20}\Z", fullmatch=True)),
        "hooks": list(dict.fromkeys(required + extra)),
        "engine": draw(st.sampled_from([">=1.0.0 <2.0.0", "^1.0.0", "~1.2", "*", "1.x || 2.x"])),
    }
    if draw(st.booleans()):
        data["categories"] = draw(st.lists(slug, max_size=8, unique=True))
    if draw(st.booleans()):
        data["limits"] = {"memory_mb": draw(st.integers(16, 2048)),
                          "timeout_ms": draw(st.integers(1, 60000))}
    if draw(st.booleans()):
        data["permissions"] = {"network": draw(st.lists(
            st.builds(lambda a, b: f"{a}.{b}", slug, st.sampled_from(["com", "example"])),
            max_size=3, unique=True))}
    return data


# -- the manifest validator ---------------------------------------------------------------


def _well_formed(problems: list[Problem]) -> None:
    assert isinstance(problems, list)
    for p in problems:
        assert isinstance(p, Problem)
        assert p.path.startswith("$") and p.message and p.code


@CI
@given(json_values)
def test_validator_never_raises_on_any_document(doc):
    problems = validate_manifest(doc)
    _well_formed(problems)
    if not isinstance(doc, dict):
        assert problems


_FIELDS = sorted(manifest_schema()["properties"])


@CI
@given(valid_manifests(), st.sampled_from(_FIELDS) | st.text(max_size=10), json_values)
def test_one_field_changed_is_reported_or_still_loads(base, field, value):
    doc = {**base, field: value}
    problems = validate_manifest(doc)
    _well_formed(problems)
    if not problems:
        # Whatever the validator accepts, the typed loader must take without an exception.
        load_manifest(doc)


@CI
@given(valid_manifests())
def test_valid_manifests_round_trip(doc):
    assert validate_manifest(doc) == []
    raw = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    manifest = load_manifest(raw)
    assert manifest.to_dict() == doc
    assert str(manifest.version) == doc["version"]
    assert manifest.publisher + "/" + manifest.short_name == doc["name"]
    assert load_manifest(json.dumps(manifest.to_dict()).encode()).to_dict() == doc


@CI
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_parsing_bytes_raises_only_manifest_errors(raw):
    try:
        parse_manifest_bytes(raw)
    except ManifestError as exc:
        _well_formed(exc.problems)
        assert exc.problems


# -- the range matcher (npm semantics) ----------------------------------------------------


@CI
@given(nums, nums, nums)
def test_caret_contains_its_version_and_stops_at_the_left_most_non_zero(a, b, c):
    r = parse_range(f"^{a}.{b}.{c}")
    assert r.matches(f"{a}.{b}.{c}")
    assert not r.matches(f"{a}.{b}.{c}-rc.1")  # below it
    if a > 0:
        assert r.matches(f"{a}.{b + 3}.0") and r.matches(f"{a}.{b}.{c + 7}")
        assert not r.matches(f"{a + 1}.0.0")
    elif b > 0:
        assert r.matches(f"0.{b}.{c + 7}")
        assert not r.matches(f"0.{b + 1}.0")
    else:
        assert not r.matches(f"0.0.{c + 1}")
    if c > 0:
        assert not r.matches(f"{a}.{b}.{c - 1}")


@CI
@given(nums, nums, nums)
def test_tilde_allows_patch_updates_only(a, b, c):
    r = parse_range(f"~{a}.{b}.{c}")
    assert r.matches(f"{a}.{b}.{c}") and r.matches(f"{a}.{b}.{c + 5}")
    assert not r.matches(f"{a}.{b + 1}.0")
    if c > 0:
        assert not r.matches(f"{a}.{b}.{c - 1}")


ranges = st.sampled_from(["^1.2.3", "~0.4.1", ">=1.0.0 <2.0.0", "1.x", "*", "<0.5.0",
                          "1.0.0 - 1.4.0", "=2.0.0", ">3.1.4", "0.x", "^0.0.3", ">=2.0.0-rc.1"])
any_version = st.builds(lambda v, pre: f"{v}-{pre}" if pre else v, versions,
                        st.none() | prerelease)


@CI
@given(ranges, ranges, any_version)
def test_or_is_the_union(a, b, v):
    assert parse_range(f"{a} || {b}").matches(v) == (parse_range(a).matches(v)
                                                      or parse_range(b).matches(v))


@CI
@given(ranges, versions, prerelease)
def test_pre_releases_match_only_ranges_that_name_one_on_the_same_triple(r, v, pre):
    rng = parse_range(r)
    candidate = Version.parse(f"{v}-{pre}")
    named = {(c.version.major, c.version.minor, c.version.patch)
             for s in rng.sets for c in s if c.version.prerelease}
    if (candidate.major, candidate.minor, candidate.patch) not in named:
        assert not rng.matches(candidate)


@CI
@given(st.text(max_size=40))
def test_range_parser_raises_only_range_errors(text):
    try:
        r = parse_range(text)
    except RangeError:
        return
    r.matches("1.2.3")
    assert parse_range(r.normalized()).matches("1.2.3") == r.matches("1.2.3")


# -- the archive reader -------------------------------------------------------------------

SMALL = ArchiveLimits(max_archive_bytes=64 * 1024, max_total_bytes=256 * 1024)
VALID = gear_zip()
ZIPFILE_VALID = zipfile_zip([("gear.json", json.dumps({
    "name": "acme/hello", "version": "1.0.0", "kind": "template", "title": "Hello",
    "summary": "Renders a greeting.", "entrypoint": "hello", "hooks": ["gear_render"],
    "engine": ">=1.0.0 <2.0.0"}).encode()), ("hello.py", b"x = 1\n"), ("data/a.txt", b"a" * 500)])


def _same_as_zipfile(data: bytes) -> None:
    """Read ``data``; when the reader accepts it, zipfile must see exactly the same files."""
    try:
        archive = read_archive(data, limits=SMALL)
    except ArchiveError as exc:
        assert exc.code
        return
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = sorted(i.filename for i in zf.infolist() if not i.is_dir())
        assert list(archive.names) == names
        for name in names:
            assert archive.read(name) == zf.read(name)


@CI
@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_archive_errors(data):
    _same_as_zipfile(data)


@CI
@given(st.sampled_from([VALID, ZIPFILE_VALID]),
       st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=4))
def test_byte_flips_raise_only_archive_errors_or_read_the_same(base, flips):
    data = bytearray(base)
    for pos, value in flips:
        data[pos % len(data)] = value
    _same_as_zipfile(bytes(data))


@CI
@given(st.sampled_from([VALID, ZIPFILE_VALID]), st.integers(min_value=0),
       st.binary(min_size=1, max_size=40), st.sampled_from(["insert", "truncate", "delete"]))
def test_splices_raise_only_archive_errors_or_read_the_same(base, pos, chunk, how):
    pos %= len(base)
    if how == "insert":
        data = base[:pos] + chunk + base[pos:]
    elif how == "truncate":
        data = base[:pos]
    else:
        data = base[:pos] + base[pos + len(chunk):]
    assume(data != base)
    _same_as_zipfile(data)


def test_the_unmutated_archives_are_accepted():
    for data in (VALID, ZIPFILE_VALID):
        _same_as_zipfile(data)
        read_archive(data, limits=SMALL)
