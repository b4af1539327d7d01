"""One test per hook, named after it: each runs a small gear through the SDK's harness
(:func:`gears_sdk.testing.load_gear`) and checks what the hookspec's docstring promises.

tests/sdk/test_hook_table.py fails when a hook in the table has no test here or elsewhere
named ``test_hook_<hook>``.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from gears_sdk.errors import HookError
from gears_sdk.testing import LoadedGear, load_gear
from gears_sdk.types import CheckResult, ItemScore, RecordBatch, RenderResult, StreamInfo

CONNECTOR = """
@hookimpl
def gear_check(config, ctx):
    return {"ok": config.get("key") == "good", "message": "the API key was refused"}

@hookimpl
def gear_streams(config, ctx):
    return [{"name": "contacts", "kind": "profiles"}]
"""

PERMISSIONS = {"profile": {"read": ["traits.*"], "write": ["traits.score"]},
               "catalog": {"read": ["price"]}}


def gear(tmp_path: Path, kind: str, hooks: list[str], code: str) -> LoadedGear:
    """A gear of ``kind`` in ``tmp_path`` implementing ``hooks`` with ``code``."""
    doc = {"name": "acme/probe", "version": "0.1.0", "kind": kind, "title": "Probe",
           "summary": "A gear used by the hook tests.", "entrypoint": "probe",
           "hooks": hooks, "engine": ">=1.0.0 <2.0.0", "permissions": PERMISSIONS,
           "config_schema": {"type": "object", "properties": {"key": {"type": "string"}}}}
    (tmp_path / "gear.json").write_text(json.dumps(doc))
    (tmp_path / "README.md").write_text("# Probe\n")
    (tmp_path / "probe").mkdir()
    (tmp_path / "probe" / "__init__.py").write_text(
        "from gears_sdk import hookimpl\n" + textwrap.dedent(code))
    return load_gear(tmp_path)


def connector(tmp_path: Path, extra_hooks: list[str], code: str) -> LoadedGear:
    return gear(tmp_path, "connector", ["gear_check", "gear_streams", *extra_hooks],
                CONNECTOR + textwrap.dedent(code))


READ = """
@hookimpl
def gear_read(stream, cursor, config, ctx):
    start = cursor or 0
    return {"records": [{"user_id": f"u{start}", "traits": {"score": start}}],
            "cursor": start + 1, "has_more": start < 1}
"""


def test_hook_gear_check(tmp_path):
    loaded = connector(tmp_path, ["gear_read"], READ)
    assert loaded.check({"key": "good"}).ok
    refused = loaded.check({"key": "bad"})
    assert isinstance(refused, CheckResult) and not refused.ok
    assert refused.message == "the API key was refused"


def test_hook_gear_streams(tmp_path):
    loaded = connector(tmp_path, ["gear_read"], READ)
    assert loaded.streams() == [StreamInfo(name="contacts", kind="profiles")]


def test_hook_gear_read(tmp_path):
    loaded = connector(tmp_path, ["gear_read"], READ)
    first = loaded.read("contacts")
    assert isinstance(first, RecordBatch) and first.cursor == 1 and first.has_more
    assert loaded.read("contacts", cursor=first.cursor).records == [
        {"user_id": "u1", "traits": {"score": 1}}]


def test_hook_gear_write(tmp_path):
    loaded = connector(tmp_path, ["gear_write"], """
    @hookimpl
    def gear_write(stream, records, config, ctx):
        if stream == "all-good":
            return None
        return {"written": len(records) - 1, "failed": 1, "errors": ["u2: no email"]}
    """)
    records = [{"user_id": "u1"}, {"user_id": "u2"}]
    assert loaded.write("all-good", records).written == 2
    partial = loaded.write("segment", records)
    assert (partial.written, partial.failed, partial.errors) == (1, 1, ["u2: no email"])


def test_hook_gear_on_event(tmp_path):
    loaded = gear(tmp_path, "extension", ["gear_on_event"], """
    @hookimpl
    def gear_on_event(event, profile, config, ctx):
        if event["type"] == "bad":
            return {"set": {"attributes.email": "x"}}
        return {"increment": {"traits.score": 1}} if event["type"] == "buy" else None
    """)
    assert loaded.on_event({"type": "view", "user_id": "u1"}) is None
    patch = loaded.on_event({"type": "buy", "user_id": "u1"})
    assert patch is not None and patch.increment == {"traits.score": 1}
    with pytest.raises(HookError) as refused:
        loaded.on_event({"type": "bad", "user_id": "u1"})
    assert refused.value.code == "patch_refused"


def test_hook_gear_score_items(tmp_path):
    loaded = gear(tmp_path, "extension", ["gear_score_items"], """
    @hookimpl
    def gear_score_items(profile, items, config, ctx):
        if not items:
            return None
        return [{"item_id": i["id"], "score": -i.get("price", 0)} for i in items]
    """)
    items = [{"id": "a", "price": 3, "secret": 1}, {"id": "b", "price": 1}]
    assert loaded.score_items(None, []) is None
    assert loaded.score_items(None, items) == [ItemScore("a", -3), ItemScore("b", -1)]


def test_hook_gear_score_items_must_be_a_list(tmp_path):
    loaded = gear(tmp_path, "extension", ["gear_score_items"], """
    @hookimpl
    def gear_score_items(profile, items, config, ctx):
        return {"item_id": "a", "score": 1}
    """)
    with pytest.raises(HookError) as refused:
        loaded.score_items(None, [{"id": "a"}])
    assert refused.value.code == "invalid_result"


def test_hook_gear_render(tmp_path):
    loaded = gear(tmp_path, "template", ["gear_render"], """
    @hookimpl
    def gear_render(profile, content, config, ctx):
        fields = sorted(k for item in content.get("items", []) for k in item)
        return {"html": "<p>" + content.get("headline", "") + "</p>", "data": {"fields": fields}}
    """)
    result = loaded.render(content={"headline": "Hi", "items": [{"id": "a", "price": 2,
                                                                 "cost": 1}]})
    assert result == RenderResult(html="<p>Hi</p>", data={"fields": ["id", "price"]})


def lifecycle(tmp_path: Path) -> LoadedGear:
    return gear(tmp_path, "template", ["gear_render", "gear_install", "gear_uninstall"], """
    @hookimpl
    def gear_render(profile, content, config, ctx):
        return {"html": "<p>" + str(ctx.state.get("greeting")) + "</p>"}

    @hookimpl
    def gear_install(config, ctx):
        if config.get("key") == "refused":
            raise ValueError("the remote account refused the install")
        ctx.state.set("greeting", "hello")

    @hookimpl
    def gear_uninstall(config, ctx):
        ctx.state.delete("greeting")
    """)


def test_hook_gear_install(tmp_path):
    loaded = lifecycle(tmp_path)
    assert loaded.render() == RenderResult(html="<p>None</p>")
    loaded.install()
    assert loaded.render() == RenderResult(html="<p>hello</p>")
    with pytest.raises(ValueError, match="refused the install"):
        loaded.install({"key": "refused"})


def test_hook_gear_uninstall(tmp_path):
    loaded = lifecycle(tmp_path)
    loaded.install()
    loaded.uninstall()
    assert loaded.ctx.state.get("greeting") is None
