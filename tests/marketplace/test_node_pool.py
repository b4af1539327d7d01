"""The one HTTP client of engine nodes, against real servers on loopback: failover past a
node that refuses connections, a deadline on a node that does not answer, and the
node's JSON errors raised again as the same MarketplaceError."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from marketplace.engine_service import NodePool
from marketplace.errors import MarketplaceError

Handler = Callable[[BaseHTTPRequestHandler], None]


class Node:
    """A real HTTP server on 127.0.0.1 answering every request with ``handler``."""

    def __init__(self, handler: Handler) -> None:
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []
        node = self

        class H(BaseHTTPRequestHandler):
            def _any(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                node.seen.append((self.command, self.path, dict(self.headers),
                                  self.rfile.read(size)))
                handler(self)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        # a client that gave up (the deadline test) leaves a broken pipe: not worth a trace
        self.server.handle_error = lambda *_: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def answer(status: int, body: Any, content_type: str = "application/json") -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
    return handle


@pytest.fixture
def nodes() -> Iterator[Callable[[Handler], Node]]:
    started: list[Node] = []

    def start(handler: Handler) -> Node:
        started.append(Node(handler))
        return started[-1]

    yield start
    for n in started:
        n.close()


@pytest.fixture
def dead_url() -> str:
    """A loopback port nothing listens on: connections to it are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_refusing_node_is_skipped_and_cooled_off(nodes, dead_url):
    up = nodes(answer(200, {"ok": True}))
    pool = NodePool([dead_url, up.url], timeout=5, token="t")
    for _ in range(3):  # whichever node the rotation starts with, the live one answers
        assert pool.request("GET", "/engine/v1/x").json() == {"ok": True}
    # the dead node is tried after the live one until its cool-off ends
    assert pool.order() == [up.url, dead_url]
    assert [s[1] for s in up.seen] == ["/engine/v1/x"] * 3


def test_no_node_answering_is_503_engine_unavailable(dead_url):
    pool = NodePool([dead_url], timeout=5, token="t")
    with pytest.raises(MarketplaceError) as err:
        pool.request("POST", "/engine/v1/workspaces/shop/events", json={"events": []})
    assert (err.value.status, err.value.code) == (503, "engine_unavailable")
    assert dead_url in err.value.message
    # still tried (the only node, though cooling off) and still refused
    with pytest.raises(MarketplaceError) as again:
        pool.request("GET", "/engine/v1/x")
    assert again.value.code == "engine_unavailable"


def test_a_node_past_the_deadline_is_503_and_the_request_is_not_resent(nodes):
    release = threading.Event()

    def slow(h: BaseHTTPRequestHandler) -> None:
        release.wait(10)
        answer(200, {"late": True})(h)

    stuck = nodes(slow)
    spare = nodes(answer(200, {"ok": True}))
    pool = NodePool([stuck.url, spare.url], timeout=0.5, token="t")
    pool.order = lambda: [stuck.url, spare.url]  # type: ignore[method-assign]
    try:
        with pytest.raises(MarketplaceError) as err:
            pool.request("POST", "/engine/v1/workspaces/shop/events", json={"events": [1]})
    finally:
        release.set()
    assert (err.value.status, err.value.code) == (503, "engine_unavailable")
    assert "did not answer within 0.5 seconds" in err.value.message
    # the node accepted the request, so it may have run: it is never sent to another
    assert len(stuck.seen) == 1 and spare.seen == []


def test_the_nodes_error_comes_back_as_the_same_error(nodes):
    body = {"error": {"code": "invalid_segment", "message": "the segment is invalid",
                      "details": [{"path": "$.rule", "message": "a rule", "code": "required"}]}}
    node = nodes(answer(422, body))
    pool = NodePool([node.url], timeout=5, token="t")
    with pytest.raises(MarketplaceError) as err:
        pool.request("PUT", "/engine/v1/workspaces/shop/segments/a", json={})
    e = err.value
    assert (e.status, e.code, e.message, e.details) == (
        422, "invalid_segment", "the segment is invalid",
        [{"path": "$.rule", "message": "a rule", "code": "required"}])
    # unchecked (the forwarder), the answer is handed back as it came
    raw = pool.request("PUT", "/engine/v1/workspaces/shop/segments/a", json={}, check=False)
    assert raw.status_code == 422 and raw.json() == body


def test_an_error_without_the_json_shape_is_engine_unavailable(nodes):
    node = nodes(answer(502, b"<html>Bad Gateway</html>", "text/html"))
    pool = NodePool([node.url], timeout=5, token="t")
    with pytest.raises(MarketplaceError) as err:
        pool.request("GET", "/engine/v1/x")
    assert (err.value.status, err.value.code) == (503, "engine_unavailable")
    assert "502" in err.value.message


def test_the_node_token_goes_to_node_endpoints_only(nodes):
    node = nodes(answer(200, {}))
    pool = NodePool([node.url], timeout=5, token="s3cret")
    pool.request("GET", "/engine/v1/_node/status")
    pool.request("GET", "/engine/v1/workspaces/shop/segments",
                 headers={"Authorization": "Bearer user-token"})
    sent = [s[2].get("Authorization") for s in node.seen]
    assert sent == ["Bearer s3cret", "Bearer user-token"]


def test_settings_give_the_pool_its_nodes_and_a_shared_token(tmp_path):
    from marketplace.config import load_settings
    from marketplace.settings import ConfigError

    one = load_settings({"INSTANCE_PATH": str(tmp_path),
                         "ENGINE_URLS": "http://127.0.0.1:8001/, http://127.0.0.1:8002"},
                        environ={})
    two = load_settings({"INSTANCE_PATH": str(tmp_path)}, environ={})
    assert one["ENGINE_URLS"] == ["http://127.0.0.1:8001", "http://127.0.0.1:8002"]
    assert two["ENGINE_URLS"] == [] and two["ENGINE_TIMEOUT_SECONDS"] == 30
    # processes on one instance directory agree on the generated token, kept 0600
    assert one["ENGINE_NODE_TOKEN"] == two["ENGINE_NODE_TOKEN"]
    assert (tmp_path / "engine-node.token").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ConfigError, match="ENGINE_URLS"):
        load_settings({"INSTANCE_PATH": str(tmp_path), "ENGINE_URLS": "ftp://x"}, environ={})


@pytest.fixture
def hangup_url() -> Iterator[str]:
    """A loopback server that accepts each connection, reads the request and closes the
    connection without an answer: a node killed while it held the request."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join(5)
    listener.close()


def test_a_read_a_node_broke_off_goes_to_the_next_node_a_write_does_not(nodes, hangup_url):
    up = nodes(answer(200, {"ok": True}))
    pool = NodePool([hangup_url, up.url], timeout=5, token="t")
    pool.order = lambda: [hangup_url, up.url]  # type: ignore[method-assign]
    assert pool.request("GET", "/engine/v1/workspaces/shop/segments").json() == {"ok": True}
    with pytest.raises(MarketplaceError) as err:
        pool.request("POST", "/engine/v1/workspaces/shop/events", json={"events": [1]})
    assert err.value.code == "engine_unavailable" and "may or may not" in err.value.message
    assert [s[0] for s in up.seen] == ["GET"]  # the write was not sent a second time
