"""``ctx`` inside the worker: every service is a round trip to the host.

The gear holds no sockets, secrets or state of its own; these classes turn
``ctx.http.get(...)``, ``ctx.state.set(...)`` and friends into ``request``
messages and wait for the host's ``reply`` on the same channel. Errors the
host reports come back as the matching Python exception (``PermissionError``
for a host the manifest does not list, ``ValueError`` for a state value over
the limit, ...), so gear code written against
:class:`gears_sdk.testing.FakeContext` behaves the same in production.
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass
from typing import Any

from gears_sdk.context import HttpResponse, LevelLog
from gears_sdk.worker.protocol import Channel, ProtocolError

_ERRORS: dict[str, type[Exception]] = {
    "PermissionError": PermissionError,
    "ValueError": ValueError,
    "TypeError": TypeError,
    "KeyError": KeyError,
    "TimeoutError": TimeoutError,
    "ConnectionError": ConnectionError,
}
_LEVELS = ("debug", "info", "warning", "error")


class Remote:
    """Sends requests to the host and waits for their replies."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self._ids = itertools.count(1)

    def request(self, service: str, **args: Any) -> Any:
        rid = next(self._ids)
        self.channel.send({"op": "request", "id": rid, "service": service, "args": args})
        reply = self.channel.recv()
        if reply.get("op") != "reply" or reply.get("id") != rid:
            raise ProtocolError(f"expected the reply to request {rid}, got {reply.get('op')!r}")
        error = reply.get("error")
        if error:
            exc = _ERRORS.get(str(error.get("type")), RuntimeError)
            raise exc(str(error.get("message", "the host refused the request")))
        return reply.get("value")

    def notify(self, message: dict[str, Any]) -> None:
        self.channel.send(message)


class RemoteHttp:
    """``ctx.http``: the host performs the request (only to declared hosts)."""

    def __init__(self, remote: Remote):
        self._remote = remote

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                params: dict[str, Any] | None = None, json: Any = None,
                data: bytes | str | None = None, timeout: float | None = None) -> HttpResponse:
        if isinstance(data, str):
            data = data.encode("utf-8")
        value = self._remote.request(
            "http.request", method=method.upper(), url=url, headers=dict(headers or {}),
            params=params, json=json,
            data=base64.b64encode(data).decode("ascii") if data is not None else None,
            timeout=timeout)
        return HttpResponse(status=int(value["status"]), headers=dict(value["headers"]),
                            body=base64.b64decode(value["body"]), url=str(value["url"]))

    def get(self, url: str, **kwargs: Any) -> HttpResponse:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> HttpResponse:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> HttpResponse:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> HttpResponse:
        return self.request("DELETE", url, **kwargs)


class RemoteState:
    """``ctx.state``: the installation's key-value store, kept by the host."""

    def __init__(self, remote: Remote):
        self._remote = remote

    def get(self, key: str, default: Any = None) -> Any:
        value = self._remote.request("state.get", key=key)
        return default if value is None else value

    def set(self, key: str, value: Any) -> None:
        self._remote.request("state.set", key=key, value=value)

    def delete(self, key: str) -> None:
        self._remote.request("state.delete", key=key)

    def keys(self) -> list[str]:
        return list(self._remote.request("state.keys"))


class RemoteSecrets:
    """``ctx.secrets``: secret config values, fetched one at a time."""

    def __init__(self, remote: Remote):
        self._remote = remote

    def get(self, name: str) -> str | None:
        value = self._remote.request("secrets.get", name=name)
        return None if value is None else str(value)


class RemoteLog(LevelLog):
    """``ctx.log``: one-way messages; the host attributes them to the installation."""

    def __init__(self, remote: Remote):
        self._remote = remote

    def emit(self, level: str, message: str) -> None:
        self._remote.notify({"op": "log", "level": level, "message": message})


@dataclass
class RemoteContext:
    """The ``ctx`` a hook receives inside the worker."""

    gear: str
    version: str
    installation: str
    workspace: str
    http: RemoteHttp
    state: RemoteState
    secrets: RemoteSecrets
    log: RemoteLog

    @classmethod
    def connect(cls, channel: Channel, info: dict[str, Any]) -> RemoteContext:
        remote = Remote(channel)
        return cls(gear=str(info.get("name", "")), version=str(info.get("version", "")),
                   installation=str(info.get("installation", "")),
                   workspace=str(info.get("workspace", "")),
                   http=RemoteHttp(remote), state=RemoteState(remote),
                   secrets=RemoteSecrets(remote), log=RemoteLog(remote))
