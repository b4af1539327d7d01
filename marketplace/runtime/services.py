"""The host's answers to a worker's ``ctx`` requests during a call.

Everything arriving here comes from untrusted gear code: arguments are held
to the value contract of :mod:`gears_sdk.values` (so nothing non-finite, too
deep or invalid Unicode reaches ``ctx.state`` or a request) and
type-checked, and every refusal travels back as an error the gear sees as a
Python exception (``PermissionError``, ``ValueError``...). A refusal is the
gear's problem, not a protocol violation, so the worker is not killed for it.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Any

from gears_sdk.permissions import secret_allowed
from gears_sdk.values import DEFAULT_LIMITS, check_value
from gears_sdk.worker.protocol import MAX_MESSAGE_BYTES
from marketplace.runtime.http import HostHttp
from marketplace.runtime.installation import Installation

#: A request's arguments may fill a message (a large ``ctx.state`` value, a request body).
ARGS_LIMITS = DEFAULT_LIMITS.with_(max_bytes=MAX_MESSAGE_BYTES)

_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
               "error": logging.ERROR}


class Services:
    """Serves ``request`` and ``log`` messages for one installation."""

    def __init__(self, inst: Installation, http: HostHttp):
        self.inst = inst
        self.http = http
        self.logger = logging.getLogger(f"gears.gear.{inst.id}")

    def log(self, message: dict[str, Any]) -> None:
        level = _LOG_LEVELS.get(str(message.get("level")), logging.INFO)
        self.logger.log(level, "%s: %s", self.inst.gear, str(message.get("message", ""))[:8192])

    def handle(self, message: dict[str, Any], deadline: float) -> dict[str, Any]:
        """The ``reply`` message for one ``request`` message."""
        rid = message.get("id")
        try:
            value = self._dispatch(str(message.get("service")), message.get("args") or {},
                                   deadline)
            return {"op": "reply", "id": rid, "value": value}
        except (PermissionError, ValueError, TypeError, KeyError, TimeoutError,
                ConnectionError) as exc:
            kind = next(c.__name__ for c in (PermissionError, TimeoutError, ConnectionError,
                                             ValueError, TypeError, KeyError)
                        if isinstance(exc, c))
            return {"op": "reply", "id": rid, "error": {"type": kind, "message": str(exc)}}

    def _dispatch(self, service: str, args: dict[str, Any], deadline: float) -> Any:
        if not isinstance(args, dict):
            raise TypeError("request arguments must be an object")
        check_value(args, ARGS_LIMITS, "args")  # ValueRejected is a ValueError
        state = self.inst.state
        assert state is not None
        if service == "state.get":
            return state.get(_str(args, "key"))
        if service == "state.set":
            state.set(_str(args, "key"), args.get("value"))
            return None
        if service == "state.delete":
            state.delete(_str(args, "key"))
            return None
        if service == "state.keys":
            return list(state.keys())
        if service == "secrets.get":
            return self._secret(_str(args, "name"))
        if service == "http.request":
            return self._http(args, deadline)
        raise PermissionError(f"unknown service {service!r}")

    def _secret(self, name: str) -> str | None:
        declared = self.inst.manifest.permissions.secrets
        if not secret_allowed(name, declared):
            raise PermissionError(f"the secret {name!r} is not declared in permissions.secrets "
                                  f"(declared: {', '.join(declared) or 'none'})")
        return self.inst.secrets.get(name)

    def _http(self, args: dict[str, Any], deadline: float) -> dict[str, Any]:
        data = args.get("data")
        try:
            body = base64.b64decode(data, validate=True) if isinstance(data, str) else None
        except binascii.Error:
            raise ValueError("the request body is not valid base64") from None
        headers = args.get("headers") or {}
        params = args.get("params")
        timeout = args.get("timeout")
        if not isinstance(headers, dict) or (params is not None and not isinstance(params, dict)):
            raise TypeError("headers and params must be objects")
        response = self.http.request(
            _str(args, "method"), _str(args, "url"), headers=headers, params=params,
            json=args.get("json"), data=body,
            timeout=float(timeout) if isinstance(timeout, (int, float)) else None,
            deadline=deadline)
        return {"status": response.status, "headers": response.headers,
                "body": base64.b64encode(response.body).decode("ascii"), "url": response.url}


def _str(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str):
        raise TypeError(f"{key!r} must be a string")
    return value
