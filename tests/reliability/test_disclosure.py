"""What the registry tells people it should not: other publishers' unreleased gears through
install plans, host paths in error messages; and what it must tell: whether its storage and
database can take writes."""

from __future__ import annotations

import io
import os
import stat

import pytest
import requests

from tests.reliability.conftest import build_registry
from tests.sdk.malicious import gear_zip


@pytest.fixture
def reg(tmp_path, clean_env):
    return build_registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path)


def publish(reg, name: str, version: str, who: str = "dev", **manifest) -> None:
    data = gear_zip(manifest={"name": name, "version": version, **manifest})
    resp = reg.client.post("/api/v1/gears", headers=reg.headers(who),
                           data={"file": (io.BytesIO(data), "g.gear")},
                           content_type="multipart/form-data")
    assert resp.status_code == 201, resp.get_json()


def approve(reg, name: str, version: str) -> None:
    resp = reg.client.post(f"/api/v1/admin/gears/{name}/{version}/approve",
                           headers=reg.headers("admin"), json={})
    assert resp.status_code == 200, resp.get_json()


def test_an_install_plan_does_not_reveal_unreleased_gears(reg):
    publish(reg, "globex/secret", "1.0.0", who="other_dev")  # pending, never approved
    publish(reg, "acme/needs-secret", "1.0.0", requires={"globex/secret": "^1.0.0"})
    approve(reg, "acme/needs-secret", "1.0.0")
    plan = "/api/v1/workspaces/shop/installations/plan?gear="
    unknown = reg.client.get(plan + "globex/nothing-here", headers=reg.headers("business"))
    secret = reg.client.get(plan + "globex/secret", headers=reg.headers("business"))
    assert unknown.status_code == 404
    # Exactly as for a gear that does not exist, like GET /api/v1/gears/globex/secret.
    assert secret.status_code == 404, secret.get_json()
    assert secret.get_json()["error"]["code"] == unknown.get_json()["error"]["code"]
    assert reg.client.get("/api/v1/gears/globex/secret",
                          headers=reg.headers("business")).status_code == 404
    install = reg.client.post("/api/v1/workspaces/shop/installations",
                              headers=reg.headers("business"),
                              json={"gear": "globex/secret", "consent": True})
    assert install.status_code == 404
    # A released gear that requires it names the requirement, never its review state.
    needs = reg.client.get(plan + "acme/needs-secret", headers=reg.headers("business"))
    assert needs.status_code == 409
    assert "pending" not in needs.get_data(as_text=True)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only modes")
def test_healthz_reports_an_unwritable_blob_store(reg):
    assert reg.client.get("/healthz").status_code == 200
    mode = reg.blob_dir.stat().st_mode
    reg.blob_dir.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        resp = reg.client.get("/healthz")
    finally:
        reg.blob_dir.chmod(mode)
    assert resp.status_code == 503
    body = resp.get_data(as_text=True)
    assert "storage" in body and str(reg.blob_dir) not in body


def test_healthz_reports_an_unwritable_blob_store_as_root_too(reg, monkeypatch):
    """Root ignores file modes, so the store's own write probe is made to fail the way a
    full or read-only disk fails it (``OSError`` from the kernel's write)."""
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if str(path).startswith(str(reg.blob_dir)) and flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(28, "No space left on device", str(path))
        return real_open(path, flags, *args, **kwargs)

    assert reg.client.get("/healthz").status_code == 200
    monkeypatch.setattr(os, "open", refuse)
    resp = reg.client.get("/healthz")
    monkeypatch.undo()
    assert resp.status_code == 503, resp.get_data(as_text=True)
    body = resp.get_data(as_text=True)
    assert "storage" in body and str(reg.blob_dir) not in body


def test_healthz_reports_an_unwritable_database(reg):
    from sqlalchemy import text

    from marketplace.db import database

    assert reg.client.get("/healthz").status_code == 200
    # A read-only database: SQLite refuses writes with query_only, as on a full or
    # read-only disk.
    engine = database(reg.app).engine
    engine.dispose()

    from sqlalchemy import event

    def read_only(dbapi_conn, _record):
        dbapi_conn.execute("PRAGMA query_only = ON")

    event.listen(engine, "connect", read_only)
    try:
        resp = reg.client.get("/healthz")
    finally:
        event.remove(engine, "connect", read_only)
        engine.dispose()
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert "database" in resp.get_data(as_text=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_storage_errors_do_not_show_host_paths(reg, monkeypatch):
    reg.blob_dir.chmod(0o755)
    import shutil

    shutil.rmtree(reg.blob_dir)
    reg.blob_dir.write_text("not a directory")  # every write under it fails
    try:
        data = gear_zip(manifest={"name": "acme/pathless", "version": "1.0.0"})
        resp = reg.client.post("/api/v1/gears", headers=reg.headers("dev"),
                               data={"file": (io.BytesIO(data), "g.gear")},
                               content_type="multipart/form-data")
        health = reg.client.get("/healthz")
    finally:
        reg.blob_dir.unlink()
        reg.blob_dir.mkdir()
    assert resp.status_code == 503, resp.get_json()
    for answer in (resp, health):
        text = answer.get_data(as_text=True)
        assert str(reg.blob_dir) not in text and str(reg.blob_dir.parent) not in text, text


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_gunicorns_own_refusals_are_json(live_registry):
    reg = live_registry(GEARS_VETTING_INLINE_THREAD="0")
    url = reg.start(workers=1)
    too_long = requests.get(f"{url}/api/v1/gears?q={'a' * 10_000}", timeout=10)
    too_big = requests.get(f"{url}/api/v1/gears", headers={"X-Big": "b" * 10_000}, timeout=10)
    too_many = requests.get(f"{url}/api/v1/gears",
                            headers={f"X-H{i}": "v" for i in range(120)}, timeout=10)
    for resp, status in ((too_long, 414), (too_big, 431), (too_many, 431)):
        assert resp.status_code == status, resp.text
        assert resp.headers["Content-Type"] == "application/json"
        error = resp.json()["error"]
        assert error["code"] and error["message"] and error["details"] == []
    # The server goes on answering.
    assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
