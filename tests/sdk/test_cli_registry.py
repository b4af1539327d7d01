"""The ``gears`` registry commands against a small stub registry on loopback.

The stub speaks the registry's API contract (``/api/v1``) over real HTTP, so
these tests cover the client's headers, the streamed multipart upload, error
bodies and the stored login, without the full server.
"""

from __future__ import annotations

import json
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner

from gears_sdk.cli import main
from gears_sdk.client import RegistryClient, RegistryError

TOKEN = "gt_good"
VERSION = {
    "name": "acme/hello", "version": "0.1.0", "kind": "template", "title": "Hello",
    "summary": "Greets.", "status": "rejected", "yanked": True, "yank_reason": "broken",
    "quarantined": False, "review_reason": "calls an undeclared host", "sha256": "ab" * 32,
    "size": 1234, "created_at": "2024-01-01T00:00:00Z", "manifest": {},
    "url": "/api/v1/gears/acme/hello/0.1.0", "download_url": "/d", "web_url": "http://web/acme/hello",
    "findings": [{"code": "network.undeclared", "severity": "error", "message": "evil.com",
                  "path": "hello/__init__.py"}],
}
GEAR = {
    "name": "acme/hello", "publisher": "acme", "kind": "template", "title": "Hello",
    "summary": "Greets visitors.", "categories": ["content"], "latest_version": "0.1.0",
    "versions": [{"version": "0.1.0", "status": "approved", "yanked": False,
                  "created_at": "2024-01-01"}], "install_count": 7,
}


class Stub:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.override: tuple[int, Any] | None = None


def _handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            stub.requests.append({"method": self.command, "path": self.path,
                                  "headers": dict(self.headers), "body": body})
            status, payload = self._route(body)
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _route(self, body: bytes) -> tuple[int, Any]:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return 401, {"error": {"code": "unauthorized", "message": "invalid token"}}
            if stub.override:
                return stub.override
            path = self.path.split("?")[0]
            if path == "/api/v1/whoami":
                return 200, {"email": "dev@example.com", "role": "developer",
                             "scopes": ["publish"], "publishers": ["acme"]}
            if self.command == "POST" and path == "/api/v1/gears":
                return 201, {**VERSION, "status": "pending"}
            if path.endswith("/yank"):
                return 200, {**VERSION, "yank_reason": json.loads(body)["reason"]}
            if path == "/api/v1/gears":
                return 200, {"items": [GEAR], "total": 1, "page": 1, "per_page": 20}
            if path == "/api/v1/gears/acme/hello":
                return 200, GEAR
            if path == "/api/v1/gears/acme/hello/0.1.0":
                return 200, VERSION
            return 404, {"error": {"code": "not_found", "message": "no such gear"}}

        do_GET = do_POST = _answer

    return Handler


@pytest.fixture
def registry(monkeypatch, tmp_path):
    stub = Stub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stub.url = f"http://127.0.0.1:{server.server_port}"  # type: ignore[attr-defined]
    monkeypatch.setenv("GEARS_CLI_CONFIG", str(tmp_path / "cfg" / "config.json"))
    monkeypatch.setenv("GEARS_REGISTRY", stub.url)  # type: ignore[attr-defined]
    monkeypatch.setenv("GEARS_TOKEN", TOKEN)
    yield stub
    server.shutdown()
    server.server_close()


def run(*args: Any, input: str | None = None):
    result = CliRunner().invoke(main, [str(a) for a in args], input=input)
    return result.exit_code, result.stdout, result.stderr


def test_login_verifies_and_stores_the_token_privately(registry, monkeypatch, tmp_path):
    monkeypatch.delenv("GEARS_TOKEN")
    monkeypatch.delenv("GEARS_REGISTRY")
    code, out, err = run("login", "--registry", registry.url, input=TOKEN + "\n")
    assert code == 0, err
    assert "dev@example.com" in out and "acme" in out
    cfg = tmp_path / "cfg" / "config.json"
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert json.loads(cfg.read_text()) == {"registry": registry.url, "token": TOKEN}
    assert run("info", "acme/hello")[0] == 0  # the stored login is used


def test_login_refuses_a_bad_token_and_saves_nothing(registry, tmp_path):
    code, _, err = run("login", "--registry", registry.url, "--token", "nope")
    assert code == 1
    assert "error: invalid token" in err and "gears login" in err
    assert not (tmp_path / "cfg" / "config.json").exists()


def test_publish_streams_the_archive_as_multipart(registry, tmp_path):
    archive = tmp_path / "acme-hello-0.1.0.gear"
    archive.write_bytes(b"PK" + bytes(range(256)) * 500)
    code, out, err = run("publish", archive)
    assert code == 0, err
    assert "published acme/hello 0.1.0: status pending" in out and "http://web/acme/hello" in out
    assert "uploading" in err and "(100%)" in err
    sent = registry.requests[-1]
    assert sent["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    assert b'name="file"; filename="acme-hello-0.1.0.gear"' in sent["body"]
    assert archive.read_bytes() in sent["body"]


def test_publish_builds_a_directory_first(registry, tmp_path):
    gear_dir = tmp_path / "g"
    assert run("new", "acme/hello", "--kind", "extension", "--dir", gear_dir)[0] == 0
    code, _, err = run("publish", gear_dir)
    assert code == 0, err
    assert (gear_dir / "dist" / "acme-hello-0.1.0.gear").is_file()


def test_publish_shows_every_detail_of_a_refusal(registry, tmp_path):
    archive = tmp_path / "x.gear"
    archive.write_bytes(b"PK")
    registry.override = (422, {"error": {"code": "invalid_manifest", "message": "refused", "details": [
        {"path": "$.version", "message": "not semver", "code": "version"},
        {"path": "$.hooks", "message": "unknown hook", "code": "hooks"}]}})
    code, _, err = run("publish", archive)
    assert code == 1
    lines = err.splitlines()
    start = lines.index("error: refused")
    assert lines[start:start + 3] == ["error: refused", "  - $.version: not semver",
                                    "  - $.hooks: unknown hook"]


def test_yank_search_info_status(registry):
    code, out, _ = run("yank", "acme/hello", "0.1.0", "--reason", "data loss")
    assert code == 0 and "data loss" in out
    assert json.loads(registry.requests[-1]["body"]) == {"reason": "data loss"}
    assert registry.requests[-1]["path"] == "/api/v1/gears/acme/hello/0.1.0/yank"

    code, out, _ = run("search", "hel lo", "--kind", "template", "--category", "content")
    assert code == 0 and "acme/hello" in out and "NAME" in out
    assert registry.requests[-1]["path"] == ("/api/v1/gears?q=hel+lo&page=1&kind=template"
                                             "&category=content")

    code, out, _ = run("info", "acme/hello")
    assert code == 0 and "installs:    7" in out and "approved" in out
    code, out, _ = run("info", "acme/hello@0.1.0")
    assert code == 0 and "rejected" in out

    code, out, _ = run("status", "acme/hello", "0.1.0")
    assert code == 0
    assert "rejected, yanked (broken)" in out and "calls an undeclared host" in out
    assert "[error] network.undeclared at hello/__init__.py: evil.com" in out


def test_not_found_and_bad_names(registry):
    code, _, err = run("info", "acme/nothing")
    assert code == 1 and err.startswith("error: no such gear")
    code, _, err = run("status", "nopublisher", "1.0.0")
    assert code == 1 and "publisher/gear" in err


def test_unreachable_registry_and_no_login(monkeypatch, tmp_path):
    monkeypatch.setenv("GEARS_CLI_CONFIG", str(tmp_path / "none.json"))
    monkeypatch.delenv("GEARS_REGISTRY", raising=False)
    code, _, err = run("search", "x")
    assert code == 1 and "no registry is configured" in err
    monkeypatch.setenv("GEARS_REGISTRY", "http://127.0.0.1:9")
    code, _, err = run("search", "x")
    assert code == 1 and "cannot reach the registry" in err and "Traceback" not in err


def test_the_request_timeout_comes_from_gears_timeout(registry, monkeypatch):
    """GEARS_TIMEOUT, read with the other settings: a bad value is a clean error, not a
    traceback."""
    from gears_sdk.client import client_from_settings

    assert client_from_settings().timeout == 60.0
    monkeypatch.setenv("GEARS_TIMEOUT", "2.5")
    assert client_from_settings().timeout == 2.5
    monkeypatch.setenv("GEARS_TIMEOUT", "soon")
    code, _, err = run("search", "x")
    assert code == 1 and "GEARS_TIMEOUT='soon' is not a number of seconds" in err
    assert "Traceback" not in err


def test_client_raises_typed_errors(registry):
    client = RegistryClient(registry.url, "wrong")
    with pytest.raises(RegistryError) as info:
        client.whoami()
    assert (info.value.code, info.value.status) == ("unauthorized", 401)
    assert RegistryClient(registry.url, TOKEN).gear("acme/hello")["install_count"] == 7
