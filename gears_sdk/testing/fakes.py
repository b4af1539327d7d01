"""In-memory implementations of ``ctx`` for testing gears without an engine.

They follow the contracts of :mod:`gears_sdk.context` and are strict where the
real runtime is strict: state values must be JSON, ``ctx.http`` refuses hosts
the manifest does not list, and a request without a canned response fails
loudly instead of touching the network.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from gears_sdk.context import HttpResponse, LevelLog
from gears_sdk.manifest import Manifest
from gears_sdk.permissions import host_allowed, secret_allowed

_UNSET: Any = object()


def _json_copy(value: Any, what: str) -> Any:
    """Round-trip through JSON, as every value crossing the sandbox boundary does."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-serializable: {exc}") from None


class FakeState:
    """``ctx.state``: a dict that only accepts JSON values, size-capped like the real one."""

    def __init__(self, initial: dict[str, Any] | None = None, limit_kb: int = 256):
        self.limit_bytes = limit_kb * 1024
        self.data: dict[str, Any] = {}
        for key, value in (initial or {}).items():
            self.set(key, value)

    def get(self, key: str, default: Any = None) -> Any:
        return _json_copy(self.data[key], "state") if key in self.data else default

    def set(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"state keys must be strings, not {type(key).__name__}")
        copy = _json_copy(value, f"the state value for {key!r}")
        size = len(json.dumps({**self.data, key: copy}))
        if size > self.limit_bytes:
            raise ValueError(f"state would hold {size} bytes; the limit is {self.limit_bytes} "
                             "(limits.state_kb in gear.json)")
        self.data[key] = copy

    def delete(self, key: str) -> None:
        self.data.pop(key, None)

    def keys(self) -> list[str]:
        return sorted(self.data)


class FakeSecrets:
    """``ctx.secrets``: the installation's secret config values, from a dict.

    With ``declared`` (``permissions.secrets``) other names raise
    ``PermissionError``, as in the engine.
    """

    def __init__(self, values: dict[str, str] | None = None,
                 declared: Iterable[str] | None = None):
        self.values: dict[str, str] = dict(values or {})
        self.declared = None if declared is None else tuple(declared)

    def get(self, name: str) -> str | None:
        if self.declared is not None and not secret_allowed(name, self.declared):
            raise PermissionError(f"the secret {name!r} is not declared in permissions.secrets "
                                  f"(declared: {', '.join(self.declared) or 'none'})")
        return self.values.get(name)


@dataclass(frozen=True)
class LogRecord:
    level: str
    message: str


class FakeLog(LevelLog):
    """``ctx.log``: keeps every record in :attr:`records` for assertions."""

    def __init__(self) -> None:
        self.records: list[LogRecord] = []

    def emit(self, level: str, message: str) -> None:
        self.records.append(LogRecord(level, message))

    def messages(self, level: str | None = None) -> list[str]:
        """The messages logged (at ``level``, if given)."""
        return [r.message for r in self.records if level is None or r.level == level]


@dataclass
class FakeRequest:
    """A request a gear made through :class:`FakeHttp`."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] | None = None
    json: Any = None
    data: bytes | str | None = None
    timeout: float | None = None


class UnexpectedRequest(AssertionError):
    """The gear made a request the test did not prepare a response for."""


class FakeHttp:
    """``ctx.http`` serving canned responses registered with :meth:`add`.

    Responses registered for the same method and URL are served in order; the
    last one keeps being served. A URL registered without a query string
    matches any query. Every request is kept in :attr:`requests`.
    """

    def __init__(self, network: Iterable[str] = ()):
        self.network = list(network)
        self.requests: list[FakeRequest] = []
        self._routes: dict[tuple[str, str], list[HttpResponse]] = {}

    def add(self, method: str, url: str, *, json: Any = _UNSET, body: bytes | str = b"",
            status: int = 200, headers: dict[str, str] | None = None) -> None:
        """Prepare a response to ``method url`` (``json=`` sets the body and content type)."""
        hdrs = dict(headers or {})
        if json is not _UNSET:
            body = _dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        raw = body.encode("utf-8") if isinstance(body, str) else body
        response = HttpResponse(status=status, headers=hdrs, body=raw, url=url)
        self._routes.setdefault((method.upper(), url), []).append(response)

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                params: dict[str, Any] | None = None, json: Any = None,
                data: bytes | str | None = None, timeout: float | None = None) -> HttpResponse:
        """Serve the canned response, after the same host check the runtime makes."""
        method = method.upper()
        if not host_allowed(url, self.network):
            host = urlsplit(url).netloc or url
            allowed = ", ".join(self.network) or "none"
            raise PermissionError(f"{host} is not listed in gear.json permissions.network "
                                  f"(allowed: {allowed})")
        if json is not None:
            json = _json_copy(json, "the request's json body")
        self.requests.append(FakeRequest(method, url, dict(headers or {}), params, json, data,
                                         timeout))
        full = url
        if params:
            full += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
        for key in ((method, full), (method, full.split("?", 1)[0])):
            queue = self._routes.get(key)
            if queue:
                response = queue.pop(0) if len(queue) > 1 else queue[0]
                return HttpResponse(response.status, dict(response.headers), response.body, full)
        known = "\n".join(f"  {m} {u}" for m, u in self._routes) or "  (none)"
        raise UnexpectedRequest(f"no canned response for {method} {full}; prepare one with "
                                f"ctx.http.add({method!r}, {url!r}, json=...). Prepared:\n{known}")

    def get(self, url: str, **kwargs: Any) -> HttpResponse:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> HttpResponse:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> HttpResponse:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> HttpResponse:
        return self.request("DELETE", url, **kwargs)


def _dumps(value: Any) -> str:
    return json.dumps(value)


@dataclass
class FakeContext:
    """A complete in-memory ``ctx``; build one for a gear with :meth:`for_manifest`."""

    gear: str = "acme/test"
    version: str = "0.0.0"
    installation: str = "inst-test"
    workspace: str = "ws-test"
    http: FakeHttp = field(default_factory=FakeHttp)
    state: FakeState = field(default_factory=FakeState)
    secrets: FakeSecrets = field(default_factory=FakeSecrets)
    log: FakeLog = field(default_factory=FakeLog)

    @classmethod
    def for_manifest(cls, manifest: Manifest, secrets: dict[str, str] | None = None) -> FakeContext:
        """A context with the manifest's network and secrets permissions and state limit."""
        return cls(
            gear=manifest.name,
            version=str(manifest.version),
            http=FakeHttp(manifest.permissions.network),
            state=FakeState(limit_kb=manifest.limits.get("state_kb", 256)),
            secrets=FakeSecrets(secrets, declared=manifest.permissions.secrets),
        )
