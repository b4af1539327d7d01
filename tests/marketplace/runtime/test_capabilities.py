"""Every capability of the one table is enforced: a gear lacking it is refused.

For each row of :data:`gears_sdk.capabilities.CAPABILITIES` a probe drives a
real gear through the runtime (and, for a connector's records, through the
engine's record check) twice: declaring the capability, the action goes
through; without it, it is refused. A row without a probe fails the suite,
so a capability can never be shown at consent without being enforced.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from gears_sdk.capabilities import CAPABILITIES
from marketplace.engine.connectors import permitted
from marketplace.runtime import GearCallError

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

EXTENSION = '''
import json


def _seen(value):
    return {"set": {"traits.out": json.loads(json.dumps(value))}}


@hookimpl
def gear_on_event(event, profile, config, ctx):
    probe = event["type"]
    if probe == "network":
        try:
            return _seen(ctx.http.get(event["url"]).status)
        except PermissionError as exc:
            return _seen("refused: " + str(exc))
    if probe == "secrets":
        try:
            return _seen(ctx.secrets.get("token"))
        except PermissionError as exc:
            return _seen("refused: " + str(exc))
    if probe == "profile.write":
        return {"set": {"traits.other": 1}}
    if probe == "events.read":
        return _seen(event.get("properties"))
    return _seen(profile)


@hookimpl
def gear_score_items(profile, items, config, ctx):
    return [{"item_id": i["id"], "score": 1.0, "reason": json.dumps(sorted(i))} for i in items]
'''

CONNECTOR = '''
@hookimpl
def gear_check(config, ctx):
    return None


@hookimpl
def gear_streams(config, ctx):
    return [{"name": "s", "kind": "items"}]


@hookimpl
def gear_read(stream, config, cursor, ctx):
    return {"records": cursor["records"]}
'''


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def port() -> Iterator[int]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


Run = Callable[..., Any]
#: key → (the permissions granting it, a probe answering "did the action go through?")
Probe = tuple[Callable[[int], dict[str, Any]], Callable[[Run, int], bool]]


def _on_event(run: Run, probe: str, **event: Any) -> Any:
    try:
        patch = run("gear_on_event", event={"type": probe, **event},
                    profile={"traits": {"secret": 7}})
        return patch.set.get("traits.out", patch.set)
    except GearCallError as exc:
        return f"refused: {exc.code}"


def _records(run: Run, kind: str, record: dict[str, Any]) -> bool:
    """Whether the engine's record check lets the connector's record through."""
    batch = run("gear_read", stream="s", cursor={"records": [record]})
    return bool(permitted(run.manifest.permissions, kind, list(batch.records), []))


PROBES: dict[str, Probe] = {
    "network": (lambda port: {"network": [f"127.0.0.1:{port}"]},
                lambda run, port: _on_event(run, "network",
                                            url=f"http://127.0.0.1:{port}/") == 204),
    "profile.read": (lambda port: {"profile": {"read": ["traits.secret"],
                                               "write": ["traits.out"]}},
                     lambda run, port: _on_event(run, "profile.read") == {"traits": {"secret": 7}}),
    "profile.write": (lambda port: {"profile": {"write": ["traits.out", "traits.other"]}},
                      lambda run, port: _on_event(run, "profile.write") != "refused: "
                      "patch_refused"),
    "catalog.read": (lambda port: {"catalog": {"read": ["price"]}},
                     lambda run, port: "price" in run(
                         "gear_score_items", profile={},
                         items=[{"id": "p1", "price": 5, "url": "https://x.test"}])[0].reason),
    "catalog.write": (lambda port: {"catalog": {"write": ["price"]}},
                      lambda run, port: _records(run, "items", {"id": "p1", "price": 0.01})),
    "events.read": (lambda port: {"events": {"read": ["amount"]}},
                    lambda run, port: _on_event(run, "events.read",
                                                properties={"amount": 3}) == {"amount": 3}),
    "events.write": (lambda port: {"events": {"write": ["purchase"]}},
                     lambda run, port: _records(run, "events",
                                                {"user_id": "u", "type": "purchase"})),
    "secrets": (lambda port: {"secrets": ["token"]},
                lambda run, port: _on_event(run, "secrets") == "s3"),
}
_CONNECTOR_PROBES = {"catalog.write", "events.write"}


def test_every_capability_has_a_probe() -> None:
    assert set(PROBES) == {k.key for k in CAPABILITIES}


@pytest.mark.parametrize("key", [k.key for k in CAPABILITIES])
def test_a_gear_lacking_a_capability_is_refused(key, make_gear, installation, runtime_factory,
                                               port) -> None:
    grant, probe = PROBES[key]
    rt = runtime_factory(allow_private_hosts=frozenset({"127.0.0.1"}))
    outcomes = {}
    for granted in (True, False):
        perms = grant(port) if granted else {}
        extra = {k: v for k, v in perms.items() if k != "profile"}
        profile = perms.get("profile", {})
        if key in _CONNECTOR_PROBES:
            gear = make_gear(CONNECTOR, kind="connector", read=(), write=(),
                             hooks=("gear_check", "gear_streams", "gear_read"),
                             permissions=extra)
        else:
            gear = make_gear(EXTENSION, hooks=("gear_on_event", "gear_score_items"),
                             read=tuple(profile.get("read", ())),
                             write=tuple(profile.get("write", ("traits.out",))),
                             permissions=extra)
        inst = installation(gear, secrets={"token": "s3"})
        rt.start(inst)

        def run(hook: str, _id: str = inst.id, **kwargs: Any) -> Any:
            return rt.call(_id, hook, **kwargs)

        run.manifest = inst.manifest  # type: ignore[attr-defined]
        outcomes[granted] = probe(run, port)
    assert outcomes == {True: True, False: False}, json.dumps({key: outcomes})
