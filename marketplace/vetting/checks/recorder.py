"""What the dynamic test gives the gear instead of the world, and what it writes down.

During vetting nothing a pending gear asks for may leave the host, whatever
the operator allows in production (``GEARS_HTTP_ALLOW_PRIVATE_HOSTS``): no
human has looked at the code yet. :class:`RecordingHttp` is the runtime's
own ``ctx.http`` (same host checks, same redirects, same refusals for hosts
the manifest does not list) with the network replaced by a recorder that
answers ``200 {}`` and notes the method and host. :class:`CountingServices`
counts every ctx request the host refused (an undeclared secret or host, a
state value too large…), because a gear may swallow the error it got.
"""

from __future__ import annotations

from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from gears_sdk.permissions import host_allowed
from marketplace.runtime.http import HostHttp, HttpRefused
from marketplace.runtime.installation import Installation
from marketplace.runtime.services import Services

#: What every recorded request is answered with: a plausible, empty success.
ANSWER = (200, {"content-type": "application/json"}, b"{}")


class RecordingHttp(HostHttp):
    """``ctx.http`` without a network: the manifest's host rules, then a recording."""

    def __init__(self, network: Any) -> None:
        super().__init__(network, allow_private=())
        self.requests: Counter[tuple[str, str]] = Counter()
        self.refused: Counter[str] = Counter()

    def _one(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
             end: float) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        host = parts.hostname or parts.netloc or url[:200]
        if parts.scheme not in ("http", "https") or not host_allowed(url, self.network):
            self.refused[host[:200]] += 1
            raise HttpRefused(f"{parts.netloc or url} is not listed in gear.json "
                              f"permissions.network (allowed: "
                              f"{', '.join(map(str, self.network)) or 'none'})")
        self.requests[(method.upper()[:16], host[:200])] += 1
        status, resp_headers, payload = ANSWER
        return status, dict(resp_headers), payload


class CountingServices(Services):
    """The runtime's services, counting each refused request by service and error."""

    def __init__(self, inst: Installation, http: RecordingHttp) -> None:
        super().__init__(inst, http)
        self.recorder = http
        self.refused: Counter[str] = Counter()

    def handle(self, message: dict[str, Any], deadline: float) -> dict[str, Any]:
        reply = super().handle(message, deadline)
        error = reply.get("error")
        if isinstance(error, dict):
            service = str(message.get("service"))[:40]
            self.refused[f"{service} ({error.get('type')})"] += 1
        return reply
