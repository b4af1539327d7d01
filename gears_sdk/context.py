"""``ctx``: a gear's only door to the world.

A hook receives a :class:`Context`. Gears never open sockets or files of
their own (the sandbox forbids it); they ask the host through ``ctx``:

* ``ctx.http`` makes HTTP requests **on the host side**, only to the hosts the
  manifest lists under ``permissions.network``;
* ``ctx.state`` is a small key-value store private to the installation;
* ``ctx.secrets`` reads the installation's secret config values;
* ``ctx.log`` is a logger whose records are attributed to the gear.

These are protocols: the runtime provides one implementation across the
sandbox boundary and :mod:`gears_sdk.testing` provides an in-memory one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class HttpResponse:
    """A response fetched by the host on the gear's behalf."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    url: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


@runtime_checkable
class Http(Protocol):
    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        timeout: float | None = None,
    ) -> HttpResponse:
        """Make a request; raises ``PermissionError`` for hosts the manifest does not list."""
        ...

    def get(self, url: str, **kwargs: Any) -> HttpResponse: ...

    def post(self, url: str, **kwargs: Any) -> HttpResponse: ...


@runtime_checkable
class State(Protocol):
    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None:
        """Store a JSON-serializable value (size-capped by ``limits.state_kb``)."""
        ...

    def delete(self, key: str) -> None: ...

    def keys(self) -> list[str]: ...


@runtime_checkable
class Secrets(Protocol):
    def get(self, name: str) -> str | None:
        """The decrypted value of a config field marked ``"format": "secret"``."""
        ...


@runtime_checkable
class Log(Protocol):
    def debug(self, msg: str, *args: Any) -> None: ...

    def info(self, msg: str, *args: Any) -> None: ...

    def warning(self, msg: str, *args: Any) -> None: ...

    def error(self, msg: str, *args: Any) -> None: ...


class LevelLog:
    """A :class:`Log` built on one method: subclasses implement :meth:`emit`.

    Formatting is forgiving (a gear's bad ``%`` arguments never raise from a
    log call) and the message is capped, because it crosses a process
    boundary in production.
    """

    MAX_MESSAGE = 8192

    def emit(self, level: str, message: str) -> None:
        raise NotImplementedError

    def _format(self, level: str, msg: str, args: tuple[Any, ...]) -> None:
        try:
            text = msg % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args!r}"
        self.emit(level, text[: self.MAX_MESSAGE])

    def debug(self, msg: str, *args: Any) -> None:
        self._format("debug", msg, args)

    def info(self, msg: str, *args: Any) -> None:
        self._format("info", msg, args)

    def warning(self, msg: str, *args: Any) -> None:
        self._format("warning", msg, args)

    def error(self, msg: str, *args: Any) -> None:
        self._format("error", msg, args)


@runtime_checkable
class Context(Protocol):
    """What every hook receives as ``ctx``."""

    gear: str
    """The gear's name, e.g. ``acme/rfm-score``."""
    version: str
    installation: str
    """The installation's id (one gear installed in one workspace)."""
    workspace: str
    http: Http
    state: State
    secrets: Secrets
    log: Log
