"""The publishing loop end to end: a real registry process on loopback, driven by the
`gears` CLI as a developer would, on SQLite and PostgreSQL, local disk and S3."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
import requests

from tests.fixtures.app import postgres_schema_url
from tests.fixtures.live import GEARS, LiveRegistry, free_port

pytestmark = pytest.mark.slow


def gears(reg: LiveRegistry, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in reg.env.items() if k not in ("GEARS_REGISTRY", "GEARS_TOKEN")}
    env["GEARS_CLI_CONFIG"] = str(config)
    return subprocess.run([*GEARS, *args], env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def setup_accounts(reg: LiveRegistry) -> dict[str, str]:
    reg.marketplace("create-user", "dev@acme.test", "--role", "developer")
    reg.marketplace("create-user", "dev@globex.test", "--role", "developer")
    reg.marketplace("create-publisher", "acme", "--owner", "dev@acme.test")
    reg.marketplace("create-publisher", "globex", "--owner", "dev@globex.test")
    return {
        "dev": reg.token("dev@acme.test", "publish:acme"),
        "admin": reg.token("admin@gears.test", "admin"),
    }


@pytest.fixture(params=["sqlite+file", "sqlite+s3", "postgresql+file"])
def backend_settings(request, tmp_path):
    db, storage = request.param.split("+")
    settings: dict[str, str] = {}
    if storage == "s3":
        endpoint = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        settings.update(GEARS_STORAGE_URL=f"s3://{bucket}/blobs", GEARS_S3_ENDPOINT_URL=endpoint)
    if db == "postgresql":
        with postgres_schema_url() as url:
            yield {**settings, "GEARS_DATABASE_URL": url}
        return
    yield settings


def test_publish_review_download_yank(live_registry, backend_settings, make_gear_dir, tmp_path):
    reg = live_registry(**backend_settings)
    tokens = setup_accounts(reg)
    url = reg.start()
    config = tmp_path / "gears-config.json"

    login = gears(reg, config, "login", "--registry", url, "--token", tokens["dev"])
    assert login.returncode == 0, login.stderr
    assert oct(config.stat().st_mode & 0o777) == "0o600"

    gear_dir = make_gear_dir("acme/hello", "1.0.0")
    built = gears(reg, config, "build", str(gear_dir), "-o", str(tmp_path / "out"))
    assert built.returncode == 0, built.stderr
    sha = next(line.split()[-1] for line in built.stdout.splitlines() if "sha256" in line)
    archive = tmp_path / "out" / "acme-hello-1.0.0.gear"
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == sha

    first = gears(reg, config, "publish", str(archive))
    assert first.returncode == 0, first.stderr
    assert "pending" in first.stdout

    again = gears(reg, config, "publish", str(archive))
    assert again.returncode == 1
    assert "already been published" in again.stderr

    foreign = gears(reg, config, "publish", str(make_gear_dir("globex/widget", "1.0.0")))
    assert foreign.returncode == 1
    assert "may not publish into the namespace 'globex'" in foreign.stderr

    status = gears(reg, config, "status", "acme/hello", "1.0.0")
    assert status.returncode == 0 and "pending" in status.stdout

    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    approved = requests.post(f"{url}/api/v1/admin/gears/acme/hello/1.0.0/approve", headers=admin,
                             timeout=10)
    assert approved.status_code == 200 and approved.json()["status"] == "approved"

    download = requests.get(f"{url}/api/v1/gears/acme/hello/1.0.0/download", timeout=10)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == sha
    assert download.content == archive.read_bytes()
    if "GEARS_S3_ENDPOINT_URL" in backend_settings:
        assert download.history and download.history[0].status_code == 302

    found = gears(reg, config, "search", "hello")
    assert found.returncode == 0 and "acme/hello" in found.stdout

    yank = gears(reg, config, "yank", "acme/hello", "1.0.0", "--reason", "wrong default")
    assert yank.returncode == 0, yank.stderr

    assert "acme/hello" not in gears(reg, config, "search", "hello").stdout
    listing = requests.get(f"{url}/api/v1/gears", timeout=10).json()
    assert all(g["name"] != "acme/hello" for g in listing["items"])
    after = requests.get(f"{url}/api/v1/gears/acme/hello/1.0.0/download", timeout=10)
    assert after.status_code == 200 and hashlib.sha256(after.content).hexdigest() == sha

    info = gears(reg, config, "status", "acme/hello", "1.0.0")
    assert "wrong default" in info.stdout


def test_storage_outage_publishes_nothing(live_registry, make_gear_dir, tmp_path, s3_server):
    dead = f"http://127.0.0.1:{free_port()}"
    reg = live_registry()
    tokens = setup_accounts(reg)
    # The same registry, restarted against an S3 endpoint that is down.
    reg.env.update(GEARS_STORAGE_URL="s3://gone/blobs", GEARS_S3_ENDPOINT_URL=dead)
    url = reg.start(workers=1)
    config = tmp_path / "gears-config.json"
    gears(reg, config, "login", "--registry", url, "--token", tokens["dev"])

    result = gears(reg, config, "publish", str(make_gear_dir("acme/hello", "1.0.0")))
    assert result.returncode == 1
    assert "nothing was published" in result.stderr
    assert "Traceback" not in result.stderr

    dev = {"Authorization": f"Bearer {tokens['dev']}"}
    missing = requests.get(f"{url}/api/v1/gears/acme/hello/1.0.0", headers=dev, timeout=10)
    assert missing.status_code == 404
    health = requests.get(f"{url}/healthz", timeout=10)
    assert health.status_code == 503 and health.json()["status"] != "ok"
