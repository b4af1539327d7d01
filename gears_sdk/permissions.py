"""The rules behind a manifest's ``permissions``, as plain functions.

The runtime enforces them around every hook call and :mod:`gears_sdk.testing`
applies the same functions in-process, so a gear author meets a permission
problem in a unit test rather than in production.

* **network**: ``api.example.com`` allows that host on the scheme's default
  port; ``api.example.com:8443`` allows exactly that port; ``*.example.com``
  allows any sub-domain (not ``example.com`` itself).
* **profile.read**: a gear receives only the declared fields
  (``traits.rfm``, ``traits.*``, ``events``...).
* **profile.write**: every path a patch touches must lie at or below a
  declared field; writing ``traits`` when ``traits.rfm`` is declared is refused.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_allowed(url: str, patterns: Iterable[str]) -> bool:
    """Whether ``url`` may be requested by a gear declaring ``patterns``."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return False
    host = parts.hostname.lower().rstrip(".")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        return False
    for pattern in patterns:
        pat_host, _, pat_port = pattern.lower().partition(":")
        want_port = int(pat_port) if pat_port else _DEFAULT_PORTS[parts.scheme]
        if port != want_port:
            continue
        if pat_host.startswith("*."):
            if host.endswith(pat_host[1:]) and host != pat_host[2:]:
                return True
        elif host == pat_host:
            return True
    return False


def _segments_match(pattern: list[str], path: list[str]) -> bool:
    return len(path) >= len(pattern) and all(
        p == "*" or p == s for p, s in zip(pattern, path, strict=False)
    )


def field_allowed(path: str, patterns: Iterable[str]) -> bool:
    """Whether the dotted ``path`` lies at or below one of ``patterns``."""
    segs = path.split(".")
    return any(_segments_match(p.split("."), segs) for p in patterns)


_MISSING = object()


def _pick(value: Any, segments: list[str]) -> Any:
    if not segments:
        return copy.deepcopy(value)
    if not isinstance(value, dict):
        return _MISSING
    head, rest = segments[0], segments[1:]
    keys = list(value) if head == "*" else [head] if head in value else []
    out = {}
    for key in keys:
        picked = _pick(value[key], rest)
        if picked is not _MISSING:
            out[key] = picked
    return out if out or head == "*" else _MISSING


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    for key, value in more.items():
        if isinstance(into.get(key), dict) and isinstance(value, dict):
            _merge(into[key], value)
        else:
            into[key] = value


def filter_profile(profile: dict[str, Any], read: Iterable[str]) -> dict[str, Any]:
    """A deep copy of ``profile`` holding only the fields ``read`` declares."""
    out: dict[str, Any] = {}
    for pattern in read:
        picked = _pick(profile, pattern.split("."))
        if isinstance(picked, dict):
            _merge(out, picked)
    return out


def patch_violations(paths: Iterable[str], write: Iterable[str]) -> list[str]:
    """The paths of a profile patch that ``write`` does not allow."""
    write = list(write)
    return [p for p in paths if not field_allowed(p, write)]
