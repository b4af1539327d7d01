"""The resolver against an in-memory source, and DbCandidateSource against SQLite."""

from __future__ import annotations

import pytest

from gears_sdk.versions import parse_range, parse_version
from marketplace.workspaces.resolver import (
    Candidate,
    DbCandidateSource,
    InMemorySource,
    ResolutionError,
    explain,
    resolve,
)


def cand(name: str, version: str, requires: dict[str, str] | None = None,
         engine: str = ">=1.0.0 <2.0.0", yanked: bool = False) -> Candidate:
    return Candidate(name, parse_version(version),
                     {k: parse_range(v) for k, v in (requires or {}).items()},
                     parse_range(engine), sha256=f"{name}@{version}", yanked=yanked)


def versions(resolution) -> dict[str, str]:
    return {name: str(c.version) for name, c in resolution.items()}


def test_highest_satisfying_version_is_chosen():
    src = InMemorySource([cand("acme/a", v) for v in ("1.0.0", "1.2.0", "1.10.1", "2.0.0")])
    assert versions(resolve([("acme/a", "^1.0.0")], src)) == {"acme/a": "1.10.1"}
    assert versions(resolve([("acme/a", "*")], src)) == {"acme/a": "2.0.0"}


def test_ranges_from_several_dependents_intersect():
    src = InMemorySource([
        *(cand("acme/lib", v) for v in ("1.3.0", "1.4.0", "1.4.7", "1.5.0", "2.0.0")),
        cand("acme/x", "1.0.0", {"acme/lib": ">=1.4.0"}),
        cand("acme/y", "1.0.0", {"acme/lib": "<1.5.0"}),
    ])
    res = resolve([("acme/x", "^1"), ("acme/y", "^1"), ("acme/lib", "^1.0.0")], src)
    assert res["acme/lib"].version == parse_version("1.4.7")


def test_transitive_requires_and_dependency_order():
    src = InMemorySource([
        cand("acme/app", "1.0.0", {"acme/mid": "^1.0.0"}),
        cand("acme/mid", "1.1.0", {"acme/base": "~2.1.0"}),
        cand("acme/base", "2.1.3"), cand("acme/base", "2.2.0"),
    ])
    res = resolve([("acme/app", "1.0.0")], src)
    assert list(res) == ["acme/base", "acme/mid", "acme/app"]
    assert versions(res) == {"acme/base": "2.1.3", "acme/mid": "1.1.0", "acme/app": "1.0.0"}


def test_backtracks_to_an_older_dependent_when_the_newest_clashes():
    src = InMemorySource([
        cand("acme/block", "1.1.0", {"acme/reco": "^1.4.0"}),
        cand("acme/block", "1.2.0", {"acme/reco": "^2.0.0"}),
        cand("acme/reco", "1.4.2"), cand("acme/reco", "2.0.0"),
    ])
    res = resolve([("acme/block", "^1.0.0"), ("acme/reco", "~1.4.0")], src)
    assert versions(res) == {"acme/reco": "1.4.2", "acme/block": "1.1.0"}


def test_prerelease_only_when_the_range_names_one():
    src = InMemorySource([cand("acme/a", "1.0.0"), cand("acme/a", "1.1.0-rc.1"),
                          cand("acme/a", "2.0.0-beta.1")])
    assert versions(resolve([("acme/a", "^1.0.0")], src)) == {"acme/a": "1.0.0"}
    assert versions(resolve([("acme/a", ">=1.1.0-rc.1 <2.0.0")], src)) == {"acme/a": "1.1.0-rc.1"}
    assert versions(resolve([("acme/a", "2.0.0-beta.1")], src)) == {"acme/a": "2.0.0-beta.1"}


def test_yanked_versions_only_when_pinned_exactly():
    src = InMemorySource([cand("acme/a", "1.0.0"), cand("acme/a", "1.1.0", yanked=True)])
    assert versions(resolve([("acme/a", "^1.0.0")], src)) == {"acme/a": "1.0.0"}
    assert versions(resolve([("acme/a", "1.1.0")], src)) == {"acme/a": "1.1.0"}
    assert versions(resolve([("acme/a", "=1.1.0")], src)) == {"acme/a": "1.1.0"}
    with pytest.raises(ResolutionError) as err:
        resolve([("acme/a", ">=1.1.0")], src)
    assert err.value.causes[0].kind == "yanked"
    assert "pin one exactly" in str(err.value)


def test_engine_incompatible_versions_are_skipped():
    src = InMemorySource([cand("acme/a", "1.0.0"), cand("acme/a", "2.0.0", engine=">=2.0.0")])
    assert versions(resolve([("acme/a", "*")], src)) == {"acme/a": "1.0.0"}
    assert versions(resolve([("acme/a", "*")], src, "2.1.0")) == {"acme/a": "2.0.0"}
    with pytest.raises(ResolutionError) as err:
        resolve([("acme/a", "^2.0.0")], src)
    msg = str(err.value)
    assert "acme/a: every version requiring engine >=2.0.0 is incompatible with this engine " \
        "(1.0.0)" in msg
    assert err.value.causes[0].kind == "engine"


def test_conflict_names_both_gears_and_both_ranges():
    src = InMemorySource([
        cand("acme/reco-block", "1.2.0", {"acme/reco": "^2.0.0"}),
        cand("acme/reco", "1.4.0"), cand("acme/reco", "2.0.0"),
    ])
    with pytest.raises(ResolutionError) as err:
        resolve([("acme/reco-block", "1.2.0"), ("acme/reco", "~1.4.0")], src)
    assert ("acme/reco-block 1.2.0 requires acme/reco ^2.0.0, but the workspace requires "
            "acme/reco ~1.4.0") in str(err.value)
    cause = err.value.causes[0]
    assert cause.kind == "conflict" and cause.gear == "acme/reco"
    assert set(cause.requirements) == {("the workspace", "~1.4.0"),
                                       ("acme/reco-block 1.2.0", "^2.0.0")}
    assert err.value.code == "resolution_failed"
    assert "acme/reco" in err.value.explain()


def test_conflict_between_two_dependents():
    src = InMemorySource([
        cand("acme/x", "1.0.0", {"acme/lib": "^1.0.0"}),
        cand("acme/y", "1.0.0", {"acme/lib": "^2.0.0"}),
        cand("acme/lib", "1.0.0"), cand("acme/lib", "2.0.0"),
    ])
    with pytest.raises(ResolutionError) as err:
        resolve([("acme/x", "*"), ("acme/y", "*")], src)
    msg = str(err.value)
    assert "acme/x 1.0.0 requires acme/lib ^1.0.0" in msg
    assert "acme/y 1.0.0 requires acme/lib ^2.0.0" in msg


def test_no_version_satisfies_lists_what_is_available():
    src = InMemorySource([cand("acme/x", "1.0.0"), cand("acme/x", "2.1.0")])
    with pytest.raises(ResolutionError) as err:
        resolve([("acme/x", ">=3.0.0")], src)
    assert "no version of acme/x satisfies >=3.0.0 (available: 1.0.0, 2.1.0)" in str(err.value)


def test_missing_gear_and_explain():
    src = InMemorySource([cand("acme/x", "1.0.0")])
    with pytest.raises(ResolutionError) as err:
        resolve([("acme/nope", "^1.0.0")], src)
    assert err.value.causes[0].kind == "unknown"
    assert "acme/nope" in str(err.value)
    assert "acme/nope" in (explain("acme/nope", "*", src) or "")
    assert explain("acme/x", "^1.0.0", src) is None
    assert "available: 1.0.0" in (explain("acme/x", "^2.0.0", src) or "")


def test_missing_transitive_dependency_names_the_dependent():
    src = InMemorySource([cand("acme/x", "1.0.0", {"acme/ghost": "^1.0.0"})])
    with pytest.raises(ResolutionError) as err:
        resolve([("acme/x", "*")], src)
    cause = err.value.causes[0]
    assert cause.gear == "acme/ghost"
    assert cause.requirements == (("acme/x 1.0.0", "^1.0.0"),)


def test_invalid_range_is_a_resolution_error():
    with pytest.raises(ResolutionError) as err:
        resolve([("acme/x", "not a range")], InMemorySource([]))
    assert "acme/x" in str(err.value)


@pytest.mark.timeout(10)
def test_dependency_cycle_terminates():
    src = InMemorySource([
        cand("acme/a", "1.0.0", {"acme/b": "^1.0.0"}),
        cand("acme/b", "1.0.0", {"acme/c": "^1.0.0"}),
        cand("acme/c", "1.0.0", {"acme/a": "^1.0.0"}),
        cand("acme/c", "1.1.0", {"acme/a": "^2.0.0"}),
    ])
    res = resolve([("acme/a", "*")], src)
    assert versions(res) == {"acme/a": "1.0.0", "acme/b": "1.0.0", "acme/c": "1.0.0"}
    assert sorted(res) == ["acme/a", "acme/b", "acme/c"]


# ---------------------------------------------------------------------------
# DbCandidateSource
# ---------------------------------------------------------------------------


def add_versions(session, publisher, name: str, rows: list[dict]) -> None:
    from marketplace.models import Gear, GearVersion, VersionStatus
    from tests.fixtures.gears import gear_manifest

    gear = Gear(name=name, publisher=publisher, kind="template", title=name, summary="")
    session.add(gear)
    for i, row in enumerate(rows):
        version = row.pop("version")
        manifest = gear_manifest(name, version, **row.pop("manifest", {}))
        session.add(GearVersion(gear=gear, version=version, sha256=f"{i:064x}", size=1,
                                manifest=manifest,
                                status=row.pop("status", VersionStatus.approved), **row))
    session.commit()


def test_db_source_offers_only_approved_unquarantined_unyanked(session, make_publisher):
    from marketplace.models import VersionStatus

    add_versions(session, make_publisher(name="acme"), "acme/a", [
        {"version": "1.0.0"},
        {"version": "1.1.0", "yanked": True},
        {"version": "1.2.0", "quarantined": True},
        {"version": "1.3.0", "status": VersionStatus.pending},
        {"version": "1.4.0", "status": VersionStatus.rejected},
        {"version": "0.9.0", "manifest": {"requires": {"acme/b": "^1.0.0"},
                                          "engine": ">=1.0.0"}},
    ])
    src = DbCandidateSource(session)
    got = {str(c.version): c for c in src.versions("acme/a")}
    assert set(got) == {"1.0.0", "0.9.0"}
    assert got["0.9.0"].requires == {"acme/b": parse_range("^1.0.0")}
    assert got["1.0.0"].sha256 == f"{0:064x}"
    assert versions(resolve([("acme/a", "^1.0.0")], src)) == {"acme/a": "1.0.0"}

    # An installed, since yanked version stays usable when allowed and pinned.
    kept = DbCandidateSource(session, allow_versions={"acme/a": ["1.1.0"]})
    assert versions(resolve([("acme/a", "1.1.0")], kept)) == {"acme/a": "1.1.0"}
    assert versions(resolve([("acme/a", "^1.0.0")], kept)) == {"acme/a": "1.0.0"}
    # Quarantine wins over a pin.
    with pytest.raises(ResolutionError):
        resolve([("acme/a", "1.2.0")], DbCandidateSource(
            session, allow_versions={"acme/a": ["1.2.0"]}))


def test_db_source_explains_unknown_and_unavailable_gears(session, make_publisher):
    from marketplace.models import VersionStatus

    add_versions(session, make_publisher(name="acme"), "acme/pending",
                 [{"version": "1.0.0", "status": VersionStatus.pending}])
    src = DbCandidateSource(session)
    with pytest.raises(ResolutionError) as err:
        resolve([("acme/ghost", "*")], src)
    assert "there is no gear named acme/ghost" in str(err.value)
    with pytest.raises(ResolutionError) as err:
        resolve([("acme/pending", "*")], src)
    # Unreleased versions are the publisher's business: the gear does not exist for others.
    assert "there is no gear named acme/pending" in str(err.value)
    assert "pending" not in str(err.value).replace("acme/pending", "")
