"""The gears_sdk.testing pytest plugin: fakes, load_gear and fixtures."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from gears_sdk.errors import GearsError, HookError, ManifestError
from gears_sdk.testing import FakeContext, FakeHttp, FakeState, UnexpectedRequest, load_gear

pytest_plugins = ["pytester"]


def write_gear(root: Path, code: str, **manifest: object) -> Path:
    """A minimal extension gear named acme/probe in ``root``."""
    doc = {
        "name": "acme/probe",
        "version": "0.1.0",
        "kind": "extension",
        "title": "Probe",
        "summary": "A gear used by the SDK's tests.",
        "entrypoint": "probe",
        "hooks": ["gear_on_event"],
        "engine": ">=1.0.0 <2.0.0",
        "permissions": {"network": ["api.example.com"],
                        "profile": {"read": ["traits.score", "attributes.*"],
                                    "write": ["traits.score"]},
                        "events": {"read": ["patch"]}, "secrets": ["token"]},
        "config_schema": {"type": "object", "properties": {
            "step": {"type": "integer", "minimum": 1, "default": 1},
            "token": {"type": "string", "format": "secret"},
        }},
        **manifest,
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "gear.json").write_text(json.dumps(doc))
    (root / "README.md").write_text("# Probe\n")
    (root / "probe").mkdir(exist_ok=True)
    header = "from gears_sdk import hookimpl\n"
    (root / "probe" / "__init__.py").write_text(header + textwrap.dedent(code))
    return root


ECHO = """
@hookimpl
def gear_on_event(event, profile, config, ctx):
    ctx.state.set("seen", {"profile": profile, "config": config,
                           "token": ctx.secrets.get("token")})
    return event.get("properties", {}).get("patch")
"""


# -- FakeHttp -----------------------------------------------------------------


def test_http_serves_canned_responses_and_records_requests():
    http = FakeHttp(["api.example.com"])
    http.add("GET", "https://api.example.com/x", json={"a": 1})
    response = http.get("https://api.example.com/x", params={"page": 2}, headers={"X": "y"})
    assert response.status == 200 and response.json() == {"a": 1}
    assert response.url == "https://api.example.com/x?page=2"
    assert http.requests[0].params == {"page": 2}
    assert http.requests[0].headers == {"X": "y"}


def test_http_serves_queued_responses_in_order_then_repeats_the_last():
    http = FakeHttp(["api.example.com"])
    http.add("GET", "https://api.example.com/p", json=1)
    http.add("GET", "https://api.example.com/p", json=2, status=503)
    assert [http.get("https://api.example.com/p").json() for _ in range(3)] == [1, 2, 2]


def test_http_exact_query_match_wins():
    http = FakeHttp(["api.example.com"])
    http.add("GET", "https://api.example.com/p", json="any")
    http.add("GET", "https://api.example.com/p?page=2", json="two")
    assert http.get("https://api.example.com/p", params={"page": 2}).json() == "two"
    assert http.get("https://api.example.com/p", params={"page": 3}).json() == "any"


@pytest.mark.parametrize(("allowed", "url", "ok"), [
    (["api.example.com"], "https://api.example.com/x", True),
    (["api.example.com"], "https://evil.com/x", False),
    (["api.example.com"], "https://api.example.com:8443/x", False),
    (["api.example.com:8443"], "https://api.example.com:8443/x", True),
    (["*.example.com"], "https://a.b.example.com/x", True),
    (["*.example.com"], "https://example.com/x", False),
    (["*.example.com"], "https://notexample.com/x", False),
    (["api.example.com"], "ftp://api.example.com/x", False),
])
def test_http_enforces_network_permissions(allowed, url, ok):
    http = FakeHttp(allowed)
    http.add("GET", url.split("?")[0], json={})
    if ok:
        assert http.get(url).ok
    else:
        with pytest.raises(PermissionError, match=r"permissions\.network"):
            http.get(url)
        assert http.requests == []


def test_http_unprepared_request_fails_loudly():
    http = FakeHttp(["api.example.com"])
    with pytest.raises(UnexpectedRequest, match=r"ctx\.http\.add\('POST'"):
        http.post("https://api.example.com/missing", json={"a": 1})


# -- FakeState, FakeLog -------------------------------------------------------


def test_state_accepts_only_json_and_returns_copies():
    state = FakeState()
    state.set("k", {"n": [1, 2]})
    state.get("k")["n"].append(3)
    assert state.get("k") == {"n": [1, 2]}
    assert state.keys() == ["k"]
    with pytest.raises(TypeError, match="JSON"):
        state.set("bad", {1, 2})
    with pytest.raises(TypeError, match="JSON"):
        state.set("nan", float("nan"))
    state.delete("k")
    assert state.get("k", "gone") == "gone"


def test_state_is_size_capped():
    state = FakeState(limit_kb=1)
    with pytest.raises(ValueError, match="state_kb"):
        state.set("big", "x" * 2000)


def test_log_captures_records():
    ctx = FakeContext()
    ctx.log.info("read %d rows", 3)
    ctx.log.error("boom")
    assert ctx.log.messages() == ["read 3 rows", "boom"]
    assert ctx.log.messages("error") == ["boom"]


# -- load_gear ----------------------------------------------------------------


def test_load_gear_filters_profile_and_splits_secrets(tmp_path):
    gear = load_gear(write_gear(tmp_path / "g", ECHO))
    profile = {"id": "u1", "attributes": {"email": "a@example.com"},
               "traits": {"score": 3, "private": True}, "events": [{"type": "x"}]}
    assert gear.on_event({"type": "view"}, profile, config={"token": "t0k"}) is None
    seen = gear.ctx.state.get("seen")
    assert seen["profile"] == {"attributes": {"email": "a@example.com"}, "traits": {"score": 3}}
    assert seen["config"] == {"step": 1}
    assert seen["token"] == "t0k"


def test_load_gear_refuses_a_patch_outside_declared_writes(tmp_path):
    gear = load_gear(write_gear(tmp_path / "g", ECHO))
    ok = gear.on_event({"properties": {"patch": {"set": {"traits.score": 4}}}})
    assert ok.set == {"traits.score": 4}
    with pytest.raises(HookError, match=r"traits\.other.*permissions\.profile\.write"):
        gear.on_event({"properties": {"patch": {"increment": {"traits.other": 1}}}})


def test_load_gear_rejects_invalid_config_and_results(tmp_path):
    code = """
    @hookimpl
    def gear_on_event(event, profile, config, ctx):
        return {"sets": {}} if event.get("typo") else object()
    """
    gear = load_gear(write_gear(tmp_path / "g", code))
    with pytest.raises(GearsError, match=r"\$\.step"):
        gear.on_event({}, config={"step": 0})
    with pytest.raises(HookError, match="JSON"):
        gear.on_event({})
    with pytest.raises(HookError, match="invalid ProfilePatch"):
        gear.on_event({"typo": True})


def test_load_gear_refuses_undeclared_hooks_and_bad_gears(tmp_path):
    gear = load_gear(write_gear(tmp_path / "g", ECHO))
    with pytest.raises(HookError, match="does not declare gear_render"):
        gear.render()
    with pytest.raises(HookError, match="not implemented"):
        load_gear(write_gear(tmp_path / "h", ECHO, hooks=["gear_on_event", "gear_score_items"]))
    with pytest.raises(ManifestError):
        load_gear(write_gear(tmp_path / "i", ECHO, version="one"))


def test_two_gears_with_the_same_module_name_stay_apart(tmp_path):
    a = load_gear(write_gear(tmp_path / "a", "VALUE = 'a'\n" + ECHO))
    b = load_gear(write_gear(tmp_path / "b", "VALUE = 'b'\n" + ECHO))
    assert (a.module.VALUE, b.module.VALUE) == ("a", "b")
    import sys
    assert "probe" not in sys.modules


def test_connector_methods_normalize_results(tmp_path):
    code = """
    @hookimpl
    def gear_check(config, ctx):
        return None

    @hookimpl
    def gear_streams(config, ctx):
        return [{"name": "s", "kind": "items"}]

    @hookimpl
    def gear_read(stream, config, cursor, ctx):
        return {"records": [{"id": cursor or 0}], "cursor": (cursor or 0) + 1}

    @hookimpl
    def gear_write(stream, records, config, ctx):
        return None
    """
    gear = load_gear(write_gear(tmp_path / "c", code, kind="connector",
                                hooks=["gear_check", "gear_streams", "gear_read", "gear_write"],
                                permissions={"catalog": {"write": ["title"]}}))
    assert gear.check().ok
    assert gear.streams()[0].kind == "items"
    assert gear.read("s", cursor=4).cursor == 5
    assert gear.write("s", [{"a": 1}, {"a": 2}]).written == 2
    gear.install()  # not declared: a no-op, as in the engine


CONNECTOR = """
@hookimpl
def gear_check(config, ctx):
    return None

@hookimpl
def gear_streams(config, ctx):
    return [{"name": "p", "kind": "profiles"}, {"name": "i", "kind": "items"},
            {"name": "e", "kind": "events"}]

@hookimpl
def gear_read(stream, config, cursor, ctx):
    return {"records": {
        "p": [{"user_id": "u1", "attributes": {"email": "evil@example.test"}}],
        "i": [{"id": "sku-1", "title": "Shoes", "price": 0.01, "url": "https://evil.test/"}],
        "e": [{"user_id": "u1", "type": "purchase", "properties": {"amount": 99999}}],
    }[stream]}
"""


@pytest.mark.parametrize(("stream", "where"), [
    ("p", r"\$\.records\[0\]: a profile record .* declares nothing"),
    ("i", r"\$\.records\[0\]\.price: price is outside permissions\.catalog\.write "
          r"\(declared: title\)(.|\n)*\.url"),
    ("e", r"\$\.records\[0\]\.type: recording 'purchase' events"),
])
def test_read_refuses_records_writing_what_the_manifest_does_not_declare(tmp_path, stream,
                                                                          where):
    gear = load_gear(write_gear(tmp_path / "c", CONNECTOR, kind="connector",
                                hooks=["gear_check", "gear_streams", "gear_read"],
                                permissions={"catalog": {"write": ["title"]}}))
    with pytest.raises(HookError, match=where) as info:
        gear.read(stream)
    assert info.value.code == "record_refused"


def test_read_accepts_records_within_the_declared_writes(tmp_path):
    gear = load_gear(write_gear(tmp_path / "c", CONNECTOR, kind="connector",
                                hooks=["gear_check", "gear_streams", "gear_read"], permissions={
                                    "profile": {"write": ["attributes.email"]},
                                    "catalog": {"write": ["title", "price", "url"]},
                                    "events": {"write": ["purchase"]}}))
    assert [len(gear.read(s).records) for s in ("p", "i", "e")] == [1, 1, 1]


SEES = """
@hookimpl
def gear_on_event(event, profile, config, ctx):
    ctx.state.set("event", event)
    ctx.state.set("profile", profile)

@hookimpl
def gear_score_items(profile, items, config, ctx):
    ctx.state.set("items", items)
    return []
"""


def test_items_and_event_properties_are_cut_to_what_the_manifest_reads(tmp_path):
    perms = {"profile": {"read": ["events"]}, "catalog": {"read": ["title"]},
             "events": {"read": ["category"]}}
    gear = load_gear(write_gear(tmp_path / "g", SEES, permissions=perms,
                                hooks=["gear_on_event", "gear_score_items"]))
    event = {"id": "e1", "user_id": "u1", "type": "purchase",
             "properties": {"category": "shoes", "email": "ann@example.test"}}
    gear.on_event(event, {"id": "u1", "events": [event]})
    assert gear.ctx.state.get("event")["properties"] == {"category": "shoes"}
    assert gear.ctx.state.get("profile")["events"][0]["properties"] == {"category": "shoes"}
    gear.score_items(None, [{"id": "p1", "title": "Shoes", "price": 80, "url": "https://x"}])
    assert gear.ctx.state.get("items") == [{"id": "p1", "title": "Shoes"}]


def test_undeclared_secrets_are_refused(tmp_path):
    code = """
    @hookimpl
    def gear_on_event(event, profile, config, ctx):
        return {"set": {"traits.score": ctx.secrets.get("other")}}
    """
    gear = load_gear(write_gear(tmp_path / "s", code), secrets={"other": "x"})
    with pytest.raises(PermissionError, match=r"permissions\.secrets"):
        gear.on_event({"type": "view", "properties": {}})


# -- the plugin inside a real pytest run ---------------------------------------


def test_gear_fixture_in_a_pytest_run(pytester):
    write_gear(pytester.path / "probe-gear", ECHO)
    tests = pytester.path / "probe-gear" / "tests"
    tests.mkdir()
    (tests / "test_probe.py").write_text(textwrap.dedent("""
        def test_patch(gear, make_event, make_profile):
            event = make_event("view", patch={"set": {"traits.score": 9}})
            assert event["properties"]["patch"]
            patch = gear.on_event(event, make_profile(traits={"score": 1}))
            assert patch.set == {"traits.score": 9}

        def test_factories(load_gear, gear_ctx, make_profile):
            assert make_profile("u9")["id"] == "u9"
            assert gear_ctx.state.keys() == []
            assert callable(load_gear)
    """))
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_gear_fixture_without_a_gear_json(pytester):
    pytester.makepyfile(test_orphan="def test_x(gear):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*found no gear.json*"])
