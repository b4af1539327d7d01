"""A web server without an engine of its own: the engine service on nodes, and
``/engine/v1/*`` forwarded to them.

``create_app`` mounts this module instead of :mod:`marketplace.engine` when
``ENGINE_URLS`` names engine nodes. Its ``init_app`` registers a
:class:`~marketplace.engine_service.RemoteEngine` as the app's engine service
(what the pages, the demo seed and the bench use) and a forwarder, so clients
keep calling ``http://<web server>/engine/v1/...`` exactly as they would an
embedded engine: method, path, query, body (at most :data:`MAX_FORWARD_BYTES`,
counted as it arrives) and the headers that matter go to a node, and its
status, headers and body come back as they are, streamed. The node checks the
client's token; the web server adds nothing to it. The node-internal endpoints
(``/engine/v1/_node/*``) are not relayed. When no node answers within
``ENGINE_TIMEOUT_SECONDS`` the client gets ``503 engine_unavailable`` as JSON.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from urllib.parse import quote

from flask import Blueprint, Flask, Response, current_app, request, stream_with_context

from marketplace import services
from marketplace.engine_service import NodeAnswer, NodePool, RemoteEngine
from marketplace.errors import MarketplaceError
from marketplace.http_input import read_body

log = logging.getLogger(__name__)

bp = Blueprint("engine_proxy", __name__)

#: The largest body forwarded: the engine API's own limit on a request body.
MAX_FORWARD_BYTES = 8 * 1024 * 1024
#: Request headers a node needs; everything else (cookies above all) stays here.
REQUEST_HEADERS = ("Authorization", "Content-Type", "Accept", "If-Match", "If-None-Match",
                   "Idempotency-Key", "X-Request-Id")
#: Response headers that describe one hop, not the answer: never copied back.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "transfer-encoding",
                        "upgrade", "server", "date"})
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
POOL = "gears.engine_pool"


def init_app(app: Flask) -> None:
    """Register the remote engine service and mount the ``/engine/v1`` forwarder."""
    pool = NodePool(app.config["ENGINE_URLS"], float(app.config["ENGINE_TIMEOUT_SECONDS"]),
                    app.config["ENGINE_NODE_TOKEN"])
    app.extensions[POOL] = pool
    app.extensions[services.ENGINE] = RemoteEngine(pool, app.config["ENGINE_NODE_TOKEN"])
    app.register_blueprint(bp)


def _headers() -> dict[str, str]:
    sent = {name: request.headers[name] for name in REQUEST_HEADERS if name in request.headers}
    # the node's own answer is copied byte for byte, so no compression is negotiated
    sent["Accept-Encoding"] = "identity"
    forwarded = request.headers.get("X-Forwarded-For")
    peer = request.remote_addr or ""
    sent["X-Forwarded-For"] = f"{forwarded}, {peer}" if forwarded else peer
    sent["X-Forwarded-Proto"] = request.scheme
    sent["X-Forwarded-Host"] = request.host
    return sent


def _relay(answer: NodeAnswer) -> Iterator[bytes]:
    try:
        yield from answer.iter_content()
    except MarketplaceError as exc:
        # the status line has gone out already: the client sees a short body
        log.warning("forwarding the answer of %s stopped: %s", answer.node, exc.message)
    finally:
        answer.close()


@bp.route("/engine/v1", defaults={"rest": ""}, methods=METHODS)
@bp.route("/engine/v1/<path:rest>", methods=METHODS)
def forward(rest: str) -> Response:
    """Send this request to an engine node and hand its answer back."""
    pool: NodePool = current_app.extensions[POOL]
    segments = rest.split("/")
    # node-internal endpoints are for the installation's own processes, which call the
    # nodes directly: the public web server does not relay them. A dot segment would
    # be resolved on the way (to another path than the one checked here): refused.
    if segments[0] == "_node" or any(s in (".", "..") for s in segments):
        raise MarketplaceError(404, "not_found", "there is no such engine endpoint")
    body = read_body(MAX_FORWARD_BYTES) if request.method not in ("GET", "HEAD") else None
    path = "/engine/v1" + (f"/{quote(rest, safe='/')}" if rest else "")
    answer = pool.request(request.method, path, params=list(request.args.items(multi=True)),
                          headers=_headers(), data=body or None, stream=True, check=False)
    headers = [(k, v) for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP]
    if request.method == "HEAD":
        answer.close()
        return Response(status=answer.status_code, headers=headers)
    return Response(stream_with_context(_relay(answer)), status=answer.status_code,
                    headers=headers, direct_passthrough=True)
