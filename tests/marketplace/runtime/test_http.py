"""``ctx.http``: the host makes requests only to declared, public hosts."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from marketplace.runtime.http import HostHttp, HttpRefused, address_problem

HTTP_GEAR = '''
@hookimpl
def gear_on_event(event, profile, config, ctx):
    try:
        r = ctx.http.get(event["url"])
        return {"set": {"traits.out": {"status": r.status, "body": r.text}}}
    except Exception as exc:
        return {"set": {"traits.out": {"error": type(exc).__name__, "message": str(exc)}}}
'''


class _Handler(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        _Handler.hits.append(self.path)
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", self.path.split("to=", 1)[1])
            self.end_headers()
            return
        body = b"hello from the fixture"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    _Handler.hits = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
    "100.100.100.200", "0.0.0.0", "224.0.0.1", "240.0.0.1", "::1", "fd00:ec2::254",
    "fe80::1", "::ffff:127.0.0.1", "2002:7f00:1::", "64:ff9b::a00:1",
])
def test_non_public_addresses_are_refused(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:4700::6810:85e5"])
def test_public_addresses_pass(address: str) -> None:
    assert address_problem(ipaddress.ip_address(address)) is None


def test_resolution_to_loopback_is_refused_after_dns() -> None:
    with pytest.raises(HttpRefused, match="loopback"):
        HostHttp(["localhost"]).resolve("localhost", 80)


def _fetch(runtime_factory, make_gear, installation, url: str, network: tuple[str, ...],
           **runtime_kwargs: object) -> dict[str, object]:
    rt = runtime_factory(**runtime_kwargs)
    inst = installation(make_gear(HTTP_GEAR, network=network))
    rt.start(inst)
    patch = rt.call(inst.id, "gear_on_event", event={"url": url}, profile={})
    out: dict[str, object] = patch.set["traits.out"]
    return out


@pytest.mark.sandbox
@pytest.mark.timeout(60)
class TestCtxHttp:
    def test_undeclared_host_is_refused(self, runtime_factory, make_gear, installation) -> None:
        out = _fetch(runtime_factory, make_gear, installation, "http://other.example.org/",
                     ("api.example.com",))
        assert out["error"] == "PermissionError"
        assert "not listed" in str(out["message"])

    def test_declared_name_resolving_to_loopback_is_refused(
            self, runtime_factory, make_gear, installation, server: int) -> None:
        out = _fetch(runtime_factory, make_gear, installation, f"http://localhost:{server}/",
                     (f"localhost:{server}",))
        assert out["error"] == "PermissionError" and "loopback" in str(out["message"])
        assert _Handler.hits == []

    def test_operator_may_allow_a_private_host(self, runtime_factory, make_gear, installation,
                                               server: int, monkeypatch) -> None:
        monkeypatch.setenv("GEARS_HTTP_ALLOW_PRIVATE_HOSTS", "127.0.0.1")
        out = _fetch(runtime_factory, make_gear, installation, f"http://127.0.0.1:{server}/x",
                     (f"127.0.0.1:{server}",), allow_private_hosts=None)
        assert out == {"status": 200, "body": "hello from the fixture"}
        assert _Handler.hits == ["/x"]

    def test_redirect_to_an_undeclared_host_is_refused(
            self, runtime_factory, make_gear, installation, server: int) -> None:
        url = f"http://127.0.0.1:{server}/redirect?to=http://127.0.0.1:1/"
        out = _fetch(runtime_factory, make_gear, installation, url, (f"127.0.0.1:{server}",),
                     allow_private_hosts=frozenset({"127.0.0.1"}))
        assert out["error"] == "PermissionError" and "not listed" in str(out["message"])
