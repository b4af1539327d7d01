"""Quarantine stops running gears everywhere: a real registry kill list, a real Runtime,
a real sandboxed worker, and a poller that only believes signed lists."""

from __future__ import annotations

import base64
import copy
import os
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gears_sdk.manifest import load_manifest
from marketplace.runtime import Installation, Runtime, SandboxError
from marketplace.runtime.killswitch import KillListPoller, installation_sha256
from marketplace.runtime.loader import GearCache
from marketplace.runtime.signatures import (
    SignedManifest,
    canonical_json,
    key_id,
    public_keys_from_json,
    verified_load,
)
from tests.marketplace.vetting.conftest import upload

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

INTERVAL = 0.3


@pytest.fixture
def running(client, actors, make_gear_archive, tmp_path):
    """acme/hello 1.0.0 approved, verified, loaded and running in a real worker."""
    data = make_gear_archive("acme/hello", "1.0.0")
    assert upload(client, actors["dev"], data).status_code == 201
    client.post("/api/v1/admin/gears/acme/hello/1.0.0/approve", headers=actors["admin"])
    body = client.get("/api/v1/gears/acme/hello/1.0.0").json
    keys = public_keys_from_json(client.get("/api/v1/keys").json)

    class Fetcher:
        def fetch(self, name, version, sha256):
            return data

    gear_dir = verified_load(GearCache(tmp_path / "cache", Fetcher()),
                             SignedManifest.from_version_json(body), keys)
    runtime = Runtime(min_level="dev-unsafe", allow_private_hosts=frozenset(),
                      root_dir=tmp_path / "rt")
    inst = Installation(id="inst-1", workspace="demo", gear_dir=gear_dir,
                        manifest=load_manifest(gear_dir), data_dir=tmp_path / "data")
    worker = runtime.start(inst)
    yield runtime, inst, worker, keys
    runtime.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _render(runtime, inst):
    return runtime.call(inst.id, "gear_render", profile={}, content={})


def test_quarantine_stops_the_worker_within_one_poll_interval(running, client, actors):
    runtime, inst, worker, keys = running
    assert installation_sha256(inst) == client.get(
        "/api/v1/gears/acme/hello/1.0.0").json["sha256"]
    poller = KillListPoller(lambda: client.get("/api/v1/killlist").json, keys, runtime,
                            interval=INTERVAL).start()
    try:
        assert _render(runtime, inst).html.startswith("<p>Hello")
        pid = worker.pid
        resp = client.post("/api/v1/admin/gears/acme/hello/1.0.0/quarantine",
                           headers=actors["admin"], json={"reason": "exfiltrates profiles"})
        assert resp.status_code == 200 and resp.json["quarantined"]
        began = time.monotonic()
        while (inst.id in runtime.health() or _alive(pid)) and time.monotonic() - began < 10:
            time.sleep(0.02)
        elapsed = time.monotonic() - began
        assert inst.id not in runtime.health() and not _alive(pid)
        assert elapsed <= INTERVAL + 1.0, elapsed  # one interval, plus the stop itself
        with pytest.raises(SandboxError) as err:
            runtime.start(inst)
        assert err.value.code == "quarantined" and "exfiltrates" in err.value.message
    finally:
        poller.stop()


def test_a_forged_kill_list_is_rejected_and_not_applied(running, client, actors):
    runtime, inst, worker, keys = running
    client.post("/api/v1/admin/gears/acme/hello/1.0.0/quarantine", headers=actors["admin"],
                json={"reason": "real"})
    genuine = client.get("/api/v1/killlist").json
    assert [e["name"] for e in genuine["entries"]] == ["acme/hello"]

    forger = Ed25519PrivateKey.generate()
    body = {"issued_at": genuine["issued_at"], "entries": genuine["entries"]}
    forged = {**body, "key_id": genuine["key_id"],
              "signature": base64.b64encode(forger.sign(canonical_json(body))).decode()}
    foreign = {**forged, "key_id": key_id(forger.public_key())}
    unsigned = dict(body)
    altered = copy.deepcopy(genuine)
    altered["entries"][0]["sha256"] = "0" * 64  # a valid signature over other entries

    for document, code in ((forged, "bad_signature"), (foreign, "unknown_key"),
                           (unsigned, "unsigned"), (altered, "bad_signature")):
        poller = KillListPoller(lambda d=document: d, keys, runtime, interval=INTERVAL)
        assert poller.poll_once() is False
        assert poller.last_error.startswith(code), poller.last_error
        assert poller.entries == []
    assert inst.id in runtime.health() and worker.alive  # nothing was stopped
    assert _render(runtime, inst).html


def test_an_older_list_cannot_roll_back_a_newer_one(running, app, client, actors):
    from marketplace.registry.signing import keyring, sign_document

    runtime, inst, _worker, keys = running
    client.post("/api/v1/admin/gears/acme/hello/1.0.0/quarantine", headers=actors["admin"],
                json={"reason": "bad"})
    new = client.get("/api/v1/killlist").json
    # genuinely signed by the registry, but issued before the list in force
    replayed = sign_document(keyring(app), {"issued_at": "2000-01-01T00:00:00+00:00",
                                            "entries": []})
    documents = iter([new, replayed])
    poller = KillListPoller(lambda: next(documents), keys, runtime, interval=INTERVAL).attach()
    assert poller.poll_once() is True and inst.id not in runtime.health()
    assert poller.poll_once() is False
    assert poller.last_error.startswith("stale_killlist")
    assert poller.blocked(inst) is not None


def test_an_unreachable_registry_keeps_the_last_list(running, client, actors):
    runtime, inst, _worker, keys = running

    def down():
        raise ConnectionError("registry unreachable")

    poller = KillListPoller(down, keys, runtime, interval=INTERVAL)
    assert poller.poll_once() is False and "unreachable" in poller.last_error
    assert inst.id in runtime.health()
