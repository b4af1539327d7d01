"""How the layers above the engine reach it: one service interface, two transports.

The pages, the registry, the demo seed and the bench never import the engine's
modules. They ask ``services.engine(app)`` for the app's :class:`EngineService`:

- in **embedded** mode (``ENGINE_URLS`` empty) ``marketplace.engine.init_app``
  registers a ``LocalEngine`` that runs the engine in this process;
- with ``ENGINE_URLS`` set the web process runs no engine at all: ``create_app``
  registers a :class:`RemoteEngine` that calls engine nodes over HTTP through
  a :class:`NodePool`, and ``/engine/v1/*`` requests are forwarded to a node.

Either way an error comes back as a :class:`~marketplace.errors.MarketplaceError`
with the status, code, message and details the engine's API would answer.

:class:`NodePool` is the one HTTP client of engine nodes (the web server's pages,
its ``/engine/v1`` forwarder, the scheduler): every call has a deadline
(``ENGINE_TIMEOUT_SECONDS``); a node that refuses the connection or does not
accept it in time is skipped for :data:`COOL_OFF_SECONDS` and the next one is
tried; when no node answers the call fails with ``503 engine_unavailable``.
A request that changes something and that a node has accepted is never sent to
a second node (it may have run there); a read the node broke off is.
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote

import requests
from urllib3.exceptions import ConnectTimeoutError

from gears_sdk.values import ValueLimits, ValueRejected, parse_json
from marketplace.errors import MarketplaceError

log = logging.getLogger(__name__)

#: Seconds a node that refused a connection (or did not accept it in time) is skipped.
COOL_OFF_SECONDS = 5.0
#: At most this long to open a connection to one node, so a dead host costs little of
#: the call's deadline before the next node is tried.
CONNECT_SECONDS = 2.0
#: The largest answer read whole from a node (streamed answers are the caller's to cap).
MAX_ANSWER_BYTES = 64 * 1024 * 1024
#: What a node's JSON answer may hold (the node is ours, but its bytes cross a boundary).
ANSWER_LIMITS = ValueLimits(max_bytes=MAX_ANSWER_BYTES, max_nodes=5_000_000, max_depth=64)
#: Requests that change nothing: one a node broke off is sent to the next node.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The prefix of node-internal endpoints, which take the node token.
NODE_PREFIX = "/engine/v1/_node/"

# The engine API's vocabulary, which forms above the engine explain to their users.
#: The comparison operators of the segment rule language.
OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "in", "contains", "exists")
#: What a segment's or campaign's name may be (the engine checks it with one pattern).
NAME_RULE = "1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit"


class EngineService(Protocol):
    """What the layers above the engine may ask of it, by workspace name.

    Every method answers what the engine's JSON API (``/engine/v1``) answers for the
    same request, and raises the same errors as :class:`MarketplaceError`.
    """

    #: ``"embedded"`` (the engine runs in this process) or ``"remote"`` (engine nodes).
    mode: str

    # -- events, profiles, catalog --------------------------------------------------------

    def ingest(self, workspace: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Validate and ingest one batch of events (``POST /events``)."""
        ...

    def profile(self, workspace: str, user_id: str) -> dict[str, Any]:
        """A profile with its segments and latest events; ``404 profile_not_found``."""
        ...

    def recent_profiles(self, workspace: str, limit: int = 20) -> list[dict[str, Any]]:
        """The profiles changed last, newest first: ``{"user_id", "updated_at"}``."""
        ...

    def import_profiles(self, workspace: str,
                        records: list[dict[str, Any]]) -> dict[str, Any]:
        """Merge ``{user_id, attributes, traits}`` records into profiles, as a connector's
        ``profiles`` stream does."""
        ...

    def put_items(self, workspace: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Insert or update catalog items (``PUT /catalog/items``)."""
        ...

    def items(self, workspace: str, *, category: str | None = None,
              limit: int = 50) -> dict[str, Any]:
        """A page of catalog items (``GET /catalog/items``)."""
        ...

    # -- decisions --------------------------------------------------------------------------

    def decide(self, workspace: str, user_id: str, placement: str,
               context: dict[str, Any] | None = None) -> dict[str, Any]:
        """One decision, logged (``POST /decide``)."""
        ...

    # -- segments and campaigns -------------------------------------------------------------

    def segments(self, workspace: str, *, counts: bool = False) -> list[dict[str, Any]]:
        """Every segment by name; with ``counts`` each also has ``"members"``: its member
        count, or ``None`` when the workspace has too many profiles to count them."""
        ...

    def segment(self, workspace: str, name: str) -> dict[str, Any]:
        """One segment; ``404 segment_not_found``."""
        ...

    def put_segment(self, workspace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a segment; every problem is a detail with its JSON path."""
        ...

    def delete_segment(self, workspace: str, name: str) -> None:
        """Delete a segment no campaign uses (``409 segment_in_use`` otherwise)."""
        ...

    def campaigns(self, workspace: str) -> list[dict[str, Any]]:
        """Every campaign, in the one order decisions weigh them."""
        ...

    def campaign(self, workspace: str, name: str) -> dict[str, Any]:
        """One campaign; ``404 campaign_not_found``."""
        ...

    def put_campaign(self, workspace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create or replace a campaign."""
        ...

    def delete_campaign(self, workspace: str, name: str) -> None:
        """Delete a campaign."""
        ...

    # -- connectors -------------------------------------------------------------------------

    def check_connection(self, workspace: str, installation: str) -> dict[str, Any]:
        """A connector's ``gear_check``: ``{"ok": bool, "message": str, ...}``."""
        ...

    def sync(self, workspace: str, installation: str,
             streams: list[str] | None = None) -> dict[str, Any]:
        """Run one sync of a connector now and answer its run."""
        ...

    # -- the engine itself ------------------------------------------------------------------

    def node_status(self) -> dict[str, Any]:
        """What the engine answering is: ``{"mode", "engine_version", "sandbox_level"}``."""
        ...

    def close(self) -> None:
        """Release what this process holds for the engine (embedded: stop its workers)."""
        ...


def unavailable(message: str) -> MarketplaceError:
    """The error every caller sees when the engine cannot be reached in time."""
    return MarketplaceError(503, "engine_unavailable", message, headers={"Retry-After": "2"})


def token_matches(expected: str | None, authorization: str | None) -> bool:
    """Whether an ``Authorization`` header carries the node token (constant time)."""
    if not expected or not authorization or not authorization.startswith("Bearer "):
        return False
    return hmac.compare_digest(authorization[len("Bearer "):].strip().encode(),
                               expected.encode())


class NodeAnswer:
    """A node's answer: its status and headers, the body read whole under the call's
    deadline (:attr:`content`, :meth:`json`) or streamed (:meth:`iter_content`)."""

    def __init__(self, response: requests.Response, node: str, deadline: float) -> None:
        self._response = response
        self.node = node
        self.status_code = response.status_code
        self.headers = response.headers
        self._deadline = deadline
        self._content: bytes | None = None

    def iter_content(self, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        """The body in chunks; past the deadline the stream ends with ``engine_unavailable``."""
        try:
            for chunk in self._response.iter_content(chunk_size):
                if time.monotonic() > self._deadline:
                    raise unavailable(f"the engine node {self.node} did not finish its answer "
                                      "within the deadline")
                yield chunk
        except requests.RequestException as exc:
            raise unavailable(f"the engine node {self.node} broke off its answer ({exc})") \
                from None
        finally:
            self._response.close()

    @property
    def content(self) -> bytes:
        """The whole body (at most :data:`MAX_ANSWER_BYTES`)."""
        if self._content is None:
            parts, size = [], 0
            for chunk in self.iter_content():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    self.close()
                    raise unavailable(f"the engine node {self.node} answered more than "
                                      f"{MAX_ANSWER_BYTES} bytes")
                parts.append(chunk)
            self._content = b"".join(parts)
        return self._content

    def json(self) -> Any:
        """The body as JSON, under the value contract."""
        try:
            return parse_json(self.content, ANSWER_LIMITS)
        except ValueRejected as exc:
            raise unavailable(f"the engine node {self.node} answered {self.status_code} "
                              f"with a body that is no valid JSON ({exc})") from None

    def close(self) -> None:
        self._response.close()

    def error(self) -> MarketplaceError | None:
        """The node's error as the :class:`MarketplaceError` it raised, or ``None`` when
        the answer is a success (2xx). An error without the JSON error shape (a proxy's
        502 page, say), or a redirect, which the engine API never answers, is
        ``engine_unavailable``."""
        if self.status_code < 300:
            return None
        try:
            body = self.json()
        except MarketplaceError:
            body = None
        err = body.get("error") if isinstance(body, dict) else None
        if not (isinstance(err, dict) and isinstance(err.get("code"), str)
                and isinstance(err.get("message"), str)):
            return unavailable(f"the engine node {self.node} answered {self.status_code} "
                               "without an error the engine would send")
        details = err.get("details")
        details = [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []
        current = err.get("current")
        headers = {name: self.headers[name] for name in ("Retry-After", "WWW-Authenticate")
                   if name in self.headers}
        return MarketplaceError(self.status_code, err["code"], err["message"], details,
                                headers=headers,
                                current=current if isinstance(current, dict) else None)


class NodePool:
    """The engine nodes at ``urls``, called with failover and a deadline per call."""

    def __init__(self, urls: Sequence[str], timeout: float, token: str | None, *,
                 cool_off: float = COOL_OFF_SECONDS) -> None:
        if not urls:
            raise ValueError("a node pool needs at least one node URL")
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout = float(timeout)
        self.cool_off = cool_off
        self._token = token
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self._local = threading.local()

    def _session(self) -> requests.Session:
        # One session per thread and process: a session's connection pool is not shared
        # across threads, nor inherited by a forked server worker.
        found = getattr(self._local, "session", None)
        if found is None or self._local.pid != os.getpid():
            found = requests.Session()
            found.trust_env = False  # no proxy from the environment between us and a node
            self._local.session, self._local.pid = found, os.getpid()
        return found

    def order(self) -> list[str]:
        """The nodes to try, in turn: those not cooling off first (rotated so calls
        spread over them), then those cooling off, the soonest back first (so a node
        that came back is found even before its cool-off ends)."""
        now = time.monotonic()
        with self._lock:
            up = [u for u in self.urls if self._down_until.get(u, 0.0) <= now]
            down = sorted((u for u in self.urls if u not in up),
                          key=lambda u: self._down_until[u])
        if up:
            shift = next(self._turn) % len(up)
            up = up[shift:] + up[:shift]
        return up + down

    def _mark(self, url: str, down: bool) -> None:
        with self._lock:
            if down:
                self._down_until[url] = time.monotonic() + self.cool_off
            else:
                self._down_until.pop(url, None)

    def request(self, method: str, path: str, *, json: Any = None, params: Any = None,
                headers: Mapping[str, str] | None = None, data: Any = None,
                stream: bool = False, check: bool = True) -> NodeAnswer:
        """Send one request to the first node that accepts the connection.

        ``path`` starts with ``/``. Calls to ``/engine/v1/_node/...`` carry the node
        token. Unless ``stream``, the body is read whole within the deadline. The
        deadline covers connecting and reading: a node that keeps sending is cut off at
        the first chunk past it, one that falls silent when its read wait (the time
        that was left when the call was sent) runs out, so a call never outlasts twice
        ``timeout``. With
        ``check`` (the default), an error answer raises the node's error as a
        :class:`MarketplaceError`; the ``/engine/v1`` forwarder passes ``check=False``
        and hands the answer back as it came.
        """
        deadline = time.monotonic() + self.timeout
        send = dict(headers or {})
        if path.startswith(NODE_PREFIX) and self._token:
            send["Authorization"] = f"Bearer {self._token}"
        refused: list[str] = []
        for url in self.order():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                response = self._session().request(
                    method, url + path, json=json, params=params, headers=send, data=data,
                    stream=True, allow_redirects=False,
                    timeout=(min(CONNECT_SECONDS, remaining), remaining))
            except requests.ConnectionError as exc:
                if not _not_connected(exc) and method.upper() not in SAFE_METHODS:
                    raise unavailable(f"the engine node {url} broke off the connection "
                                      f"({_reason(exc)}); the request may or may not have "
                                      "been carried out") from None
                log.warning("engine node %s cannot be reached (%s); trying the next",
                            url, _reason(exc))
                self._mark(url, down=True)
                refused.append(f"{url}: {_reason(exc)}")
                continue
            except requests.Timeout:
                raise unavailable(f"the engine node {url} did not answer within "
                                  f"{self.timeout:g} seconds") from None
            except requests.RequestException as exc:
                raise unavailable(f"the engine node {url} could not be called ({exc})") \
                    from None
            self._mark(url, down=False)
            answer = NodeAnswer(response, url, deadline)
            if not stream:
                answer.content  # noqa: B018 (read whole, within the deadline)
            if check and (err := answer.error()) is not None:
                raise err
            return answer
        tried = "; ".join(refused) if refused else "the deadline passed before any answered"
        raise unavailable(f"no engine node answered ({tried}); is `marketplace engine serve` "
                          "running at GEARS_ENGINE_URLS?")

    def close(self) -> None:
        """Close this thread's connections (others close with their threads)."""
        found = getattr(self._local, "session", None)
        if found is not None:
            found.close()
            self._local.session = None

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request`, the answer's JSON body returned (``None`` when empty)."""
        answer = self.request(method, path, **kwargs)
        return answer.json() if answer.content.strip() else None


def _not_connected(exc: requests.ConnectionError) -> bool:
    """Whether the request never reached the node (refused, unresolvable, or not
    accepted in time), so another node may take it safely."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    # urllib3's NewConnectionError (refused, no route, unknown name) is a ConnectTimeoutError.
    return isinstance(reason, ConnectTimeoutError)


def _reason(exc: Exception) -> str:
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return str(reason or exc)



def _q(value: str) -> str:
    """One path segment, every reserved character escaped; dots too, so that a name such
    as ``..`` stays a name instead of a step up the path."""
    return quote(value, safe="").replace(".", "%2E")


class RemoteEngine:
    """The engine on the nodes of ``pool``, over their ``/engine/v1`` API.

    Calls carry the node token: the caller (a page, the scheduler) has checked its
    own user already, as the API checks a token's scope."""

    mode = "remote"

    def __init__(self, pool: NodePool, token: str | None) -> None:
        self.pool = pool
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _call(self, method: str, path: str, *, json: Any = None,
              params: Mapping[str, Any] | None = None) -> Any:
        return self.pool.call(method, path, json=json, params=params, headers=self._headers)

    @staticmethod
    def _ws(workspace: str, *parts: str) -> str:
        return "/engine/v1/workspaces/" + "/".join([_q(workspace), *parts])

    # -- events, profiles, catalog --------------------------------------------------------

    def ingest(self, workspace: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", self._ws(workspace, "events"),
                                            json={"events": events})
        return result

    def profile(self, workspace: str, user_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", self._ws(workspace, "profiles", _q(user_id)))
        return found

    def recent_profiles(self, workspace: str, limit: int = 20) -> list[dict[str, Any]]:
        found = self._call("GET", self._ws(workspace, "profiles"), params={"limit": limit})
        return list(found["profiles"])

    def import_profiles(self, workspace: str,
                        records: list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT", self._ws(workspace, "profiles"),
                                            json={"profiles": records})
        return result

    def put_items(self, workspace: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("PUT", self._ws(workspace, "catalog", "items"),
                                            json={"items": items})
        return result

    def items(self, workspace: str, *, category: str | None = None,
              limit: int = 50) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if category:
            params["category"] = category
        found: dict[str, Any] = self._call("GET", self._ws(workspace, "catalog", "items"),
                                           params=params)
        return found

    # -- decisions --------------------------------------------------------------------------

    def decide(self, workspace: str, user_id: str, placement: str,
               context: dict[str, Any] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", self._ws(workspace, "decide"),
            json={"user_id": user_id, "placement": placement, "context": context or {}})
        return result

    # -- segments and campaigns -------------------------------------------------------------

    def segments(self, workspace: str, *, counts: bool = False) -> list[dict[str, Any]]:
        found = self._call("GET", self._ws(workspace, "segments"),
                           params={"counts": "true" if counts else "false"})
        return list(found["segments"])

    def segment(self, workspace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", self._ws(workspace, "segments", _q(name)))
        return found

    def put_segment(self, workspace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        saved: dict[str, Any] = self._call("PUT", self._ws(workspace, "segments", _q(name)),
                                           json=body)
        return saved

    def delete_segment(self, workspace: str, name: str) -> None:
        self._call("DELETE", self._ws(workspace, "segments", _q(name)))

    def campaigns(self, workspace: str) -> list[dict[str, Any]]:
        return list(self._call("GET", self._ws(workspace, "campaigns"))["campaigns"])

    def campaign(self, workspace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", self._ws(workspace, "campaigns", _q(name)))
        return found

    def put_campaign(self, workspace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        saved: dict[str, Any] = self._call("PUT", self._ws(workspace, "campaigns", _q(name)),
                                           json=body)
        return saved

    def delete_campaign(self, workspace: str, name: str) -> None:
        self._call("DELETE", self._ws(workspace, "campaigns", _q(name)))

    # -- connectors -------------------------------------------------------------------------

    def check_connection(self, workspace: str, installation: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call(
            "POST", self._ws(workspace, "connectors", _q(installation), "check"))
        return found

    def sync(self, workspace: str, installation: str,
             streams: list[str] | None = None) -> dict[str, Any]:
        run: dict[str, Any] = self._call(
            "POST", self._ws(workspace, "connectors", _q(installation), "sync"),
            json={"streams": streams} if streams is not None else {})
        return run

    # -- the engine itself ------------------------------------------------------------------

    def node_status(self) -> dict[str, Any]:
        answer = self.pool.request("GET", NODE_PREFIX + "status")
        found = answer.json()
        return {**(found if isinstance(found, dict) else {}), "mode": self.mode,
                "node": answer.node}

    def close(self) -> None:
        self.pool.close()
