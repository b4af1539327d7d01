"""Hostile and broken uploads through the real publish endpoint: each is refused with a
stable 4xx code, nothing is stored, and the registry stays healthy."""

from __future__ import annotations

import io

import pytest
import requests

from marketplace.models import Gear, GearVersion
from tests.reliability.corpus import ARCHIVE_CASES, CASES, MANIFEST_CASES, BadUpload


def test_the_corpus_is_large_and_unique():
    assert len(ARCHIVE_CASES) >= 25 and len(MANIFEST_CASES) >= 25
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_upload_is_refused_and_nothing_is_stored(registry, case: BadUpload):
    resp = registry.publish(case.make(), who=case.token)

    assert resp.status_code == case.status, resp.get_data(as_text=True)[:500]
    body = resp.get_json()
    assert body["error"]["code"] == case.code
    assert body["error"]["message"]
    details = body["error"]["details"]
    if case.detail is not None:
        assert details, body
        assert details[0]["code"] == case.detail, details
    for d in details:
        assert d["path"] and d["message"]
    assert registry.count(GearVersion) == 0
    assert registry.count(Gear) == 0
    assert registry.blobs() == []


def test_registry_is_healthy_after_the_corpus(registry):
    # Runs after the corpus in this module (and alone, it is simply a health check).
    resp = registry.client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json()["status"] == "ok"
    assert registry.count(GearVersion) == 0 and registry.blobs() == []


def test_a_valid_upload_still_works_after_the_corpus(registry, make_gear_archive):
    resp = registry.publish(make_gear_archive("acme/after-corpus", "1.0.0"))
    assert resp.status_code == 201, resp.get_json()
    assert registry.count(GearVersion) == 1 and len(registry.blobs()) == 1


def test_upload_without_a_file_field(registry):
    resp = registry.client.post("/api/v1/gears", headers=registry.headers("dev"),
                                data={"other": (io.BytesIO(b"x"), "x.gear")},
                                content_type="multipart/form-data")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "missing_file"
    resp = registry.client.post("/api/v1/gears", headers=registry.headers("dev"),
                                data=b"raw bytes", content_type="application/zip")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "missing_file"


LIVE_CASES = [c for c in CASES if c.id in {
    "not-a-zip", "compression-bomb", "dotdot", "symlink", "duplicate-keys", "nan",
    "cyrillic-a", "reserved-admin", "manifest-64k", "bom"}]


@pytest.mark.slow
def test_bad_uploads_through_a_live_server(live_registry):
    """A few of the corpus over real HTTP to gunicorn: same answers, nothing stored."""
    reg = live_registry()
    reg.marketplace("create-user", "dev@acme.test", "--role", "developer")
    reg.marketplace("create-publisher", "acme", "--owner", "dev@acme.test")
    tokens = {"dev": reg.token("dev@acme.test", "publish:acme"),
              "admin": reg.token("admin@gears.test", "admin")}
    url = reg.start(workers=2)
    for case in LIVE_CASES:
        resp = requests.post(f"{url}/api/v1/gears",
                             headers={"Authorization": f"Bearer {tokens[case.token]}"},
                             files={"file": ("upload.gear", case.make())}, timeout=30)
        assert resp.status_code == case.status, (case.id, resp.text[:300])
        assert resp.json()["error"]["code"] == case.code, case.id
        missing = requests.get(f"{url}/api/v1/gears/acme/hello",
                               headers={"Authorization": f"Bearer {tokens['admin']}"}, timeout=10)
        assert missing.status_code == 404, case.id
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    blobs = reg.workdir / "blobs"
    assert not blobs.exists() or not [p for p in blobs.rglob("*") if p.is_file()]
