"""Storage and database faults during publish and download: a clear error, nothing lost or
half-visible, and recovery without manual repair.

The blob store is a real S3 endpoint (moto's server) behind a loopback
:class:`~tests.reliability.faults.FaultProxy` that can refuse, delay or stall
connections; the registry's S3 client gets short timeouts so a stalled store
fails a request in about a second.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time

import pytest
from botocore.config import Config

from marketplace.models import Gear, GearVersion
from tests.fixtures.app import postgres_schema_url
from tests.fixtures.s3 import s3_client
from tests.reliability.conftest import build_registry
from tests.reliability.faults import FaultProxy, closed_port
from tests.sdk.malicious import gear_zip

pytestmark = pytest.mark.timeout(120)


def archive(version: str = "1.0.0", name: str = "acme/hello") -> bytes:
    return gear_zip(manifest={"name": name, "version": version})


def s3_objects(endpoint: str, bucket: str) -> list[str]:
    listing = s3_client(endpoint).list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in listing.get("Contents", [])]


@pytest.fixture
def s3_registry(tmp_path, s3_server, s3_bucket, clean_env):
    """A registry whose S3 store is reached through a fault proxy (``reg.proxy``)."""
    from marketplace.db import database
    from marketplace.storage.s3 import S3BlobStore

    with FaultProxy(s3_server) as proxy:
        reg = build_registry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path,
                             STORAGE_URL=f"s3://{s3_bucket}/blobs", S3_ENDPOINT_URL=proxy.url,
                             DOWNLOAD_REDIRECT=False)
        reg.app.extensions["gears_storage"] = S3BlobStore(
            s3_bucket, "blobs", endpoint_url=proxy.url,
            config=Config(connect_timeout=1, read_timeout=1, retries={"max_attempts": 1},
                          signature_version="s3v4", s3={"addressing_style": "path"}))
        reg.proxy = proxy  # type: ignore[attr-defined]
        reg.objects = lambda: s3_objects(s3_server, s3_bucket)  # type: ignore[attr-defined]
        yield reg
        database(reg.app).engine.dispose()


def assert_nothing_published(reg) -> None:
    assert reg.count(GearVersion) == 0 and reg.count(Gear) == 0
    admin = reg.headers("admin")
    assert reg.client.get("/api/v1/gears/acme/hello/1.0.0", headers=admin).status_code == 404


@pytest.mark.parametrize("mode", ["refuse", "stall"])
def test_publish_with_storage_down_or_stalled_then_recovered(s3_registry, mode):
    reg = s3_registry
    reg.proxy.mode = mode
    started = time.monotonic()
    resp = reg.publish(archive())
    assert time.monotonic() - started < 15, "a dead store must fail fast"
    assert resp.status_code == 503, resp.get_json()
    err = resp.get_json()["error"]
    assert err["code"] == "storage_unavailable" and "nothing was published" in err["message"]
    assert_nothing_published(reg)
    health = reg.client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["checks"]["storage"]["ok"] is False

    reg.proxy.mode = "pass"  # the store is back: the same request simply succeeds
    assert reg.client.get("/healthz").status_code == 200
    data = archive()
    assert reg.publish(data).status_code == 201
    assert reg.count(GearVersion) == 1
    assert reg.objects() == [f"blobs/{hashlib.sha256(data).hexdigest()[:2]}/"
                             f"{hashlib.sha256(data).hexdigest()}"]


def test_slow_storage_still_publishes_and_downloads(s3_registry):
    reg = s3_registry
    reg.proxy.mode, reg.proxy.delay = "delay", 0.3
    data = archive()
    assert reg.publish(data).status_code == 201
    reg.client.post("/api/v1/admin/gears/acme/hello/1.0.0/approve", headers=reg.headers("admin"))
    got = reg.client.get("/api/v1/gears/acme/hello/1.0.0/download")
    assert got.status_code == 200
    assert hashlib.sha256(got.data).hexdigest() == got.headers["X-Gears-Sha256"] \
        == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("mode", ["refuse", "stall"])
def test_download_with_storage_down_is_503_then_recovers(s3_registry, mode):
    reg = s3_registry
    data = archive()
    assert reg.publish(data).status_code == 201
    reg.client.post("/api/v1/admin/gears/acme/hello/1.0.0/approve", headers=reg.headers("admin"))
    reg.proxy.mode = mode
    resp = reg.client.get("/api/v1/gears/acme/hello/1.0.0/download")
    assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "storage_unavailable"
    reg.proxy.mode = "pass"
    resp = reg.client.get("/api/v1/gears/acme/hello/1.0.0/download")
    assert resp.status_code == 200 and hashlib.sha256(resp.data).hexdigest() == \
        hashlib.sha256(data).hexdigest()


def test_storage_that_never_existed_is_503(tmp_path, clean_env):
    from marketplace import create_app
    from marketplace.db import upgrade

    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path / 'r.db'}",
                      "STORAGE_URL": "s3://gone/blobs", "SECRET_KEY": "x",
                      "S3_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}",
                      "INSTANCE_PATH": str(tmp_path / "instance")})
    upgrade(app)
    health = app.test_client().get("/healthz")
    assert health.status_code == 503 and health.get_json()["checks"]["storage"]["ok"] is False


def test_crash_between_blob_and_row_leaves_no_version_and_a_retry_succeeds(registry, monkeypatch):
    """The blob is written, then the process dies before the version row commits."""
    from marketplace import audit

    def crash(*args, **kwargs):
        raise SystemError("the process died here")

    monkeypatch.setattr(audit, "record", crash)
    data = archive("3.0.0", "acme/crashy")
    resp = registry.publish(data)
    assert resp.status_code == 500 and resp.get_json()["error"]["code"] == "internal_error"
    assert registry.client.get("/api/v1/gears/acme/crashy/3.0.0",
                               headers=registry.headers("admin")).status_code == 404
    assert hashlib.sha256(data).hexdigest() in registry.blobs()  # left for `marketplace gc`
    monkeypatch.undo()
    assert registry.publish(data).status_code == 201


# -- the database -------------------------------------------------------------------------


def _hold_sqlite_write_lock(path: str, seconds: float, ready: threading.Event) -> None:
    conn = sqlite3.connect(path, timeout=1, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        ready.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_sqlite_lock_shorter_than_the_busy_timeout_is_waited_out(tmp_path, clean_env):
    reg = build_registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path)
    ready = threading.Event()
    holder = threading.Thread(target=_hold_sqlite_write_lock,
                              args=(str(tmp_path / "r.db"), 1.0, ready))
    holder.start()
    ready.wait(5)
    started = time.monotonic()
    resp = reg.publish(archive())
    holder.join()
    assert resp.status_code == 201, resp.get_json()
    assert time.monotonic() - started >= 0.5


def test_sqlite_lock_longer_than_the_busy_timeout_is_a_clear_503(tmp_path, clean_env,
                                                                   monkeypatch):
    import marketplace.db as db

    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 300)
    reg = build_registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path)
    ready = threading.Event()
    holder = threading.Thread(target=_hold_sqlite_write_lock,
                              args=(str(tmp_path / "r.db"), 3.0, ready))
    holder.start()
    ready.wait(5)
    resp = reg.publish(archive())
    search = reg.client.get("/api/v1/gears")  # readers are not blocked by a writer (WAL)
    holder.join()
    assert resp.status_code == 503, resp.get_json()
    assert resp.get_json()["error"]["code"] == "database_busy"
    assert resp.headers["Retry-After"]
    assert search.status_code == 200
    assert reg.count(GearVersion) == 0
    assert reg.publish(archive()).status_code == 201  # the retry goes through


def test_concurrent_sqlite_writers_all_succeed(tmp_path, clean_env):
    reg = build_registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path)
    results: list[int] = []

    def publish(i: int) -> None:
        results.append(reg.publish(archive(f"1.0.{i}", f"acme/w{i % 3}")).status_code)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201] * 12
    assert reg.count(GearVersion) == 12 and reg.count(Gear) == 3


def test_database_down_is_a_clear_503(tmp_path, clean_env):
    from marketplace import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "x",
                      "DATABASE_URL": f"postgresql://gears@127.0.0.1:{closed_port()}/gears",
                      "STORAGE_URL": f"file://{tmp_path / 'blobs'}",
                      "INSTANCE_PATH": str(tmp_path / "instance")})
    client = app.test_client()
    for path in ("/api/v1/gears", "/api/v1/gears/acme/hello"):
        resp = client.get(path)
        assert resp.status_code == 503, resp.get_data(as_text=True)
        assert resp.get_json()["error"]["code"] == "database_unavailable"
        assert resp.headers["Retry-After"]
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["checks"]["database"] == {"ok": False, "error": "database_unavailable"}


@pytest.mark.postgres
def test_postgresql_lock_is_waited_out(tmp_path, clean_env):
    import psycopg

    from tests.fixtures.app import _admin_conninfo

    with postgres_schema_url() as url:
        reg = build_registry(url, tmp_path)
        conninfo = _admin_conninfo(url.replace("postgresql+psycopg://", "postgresql://"))
        ready, release = threading.Event(), threading.Event()

        def hold() -> None:
            with psycopg.connect(conninfo) as conn:
                conn.execute("LOCK TABLE gear_versions IN ACCESS EXCLUSIVE MODE")
                ready.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        ready.wait(10)
        threading.Timer(1.0, release.set).start()
        resp = reg.publish(archive())
        holder.join()
        assert resp.status_code == 201, resp.get_json()
        assert reg.count(GearVersion) == 1
        from marketplace.db import database

        database(reg.app).engine.dispose()
