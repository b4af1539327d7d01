"""``ctx.http`` on the host: outbound HTTP on a gear's behalf, fenced in.

A gear has no network of its own; the host makes each request for it, and
only if

* the URL's host (and port) is listed in the manifest's
  ``permissions.network`` (:func:`gears_sdk.permissions.host_allowed`);
* *every* address the name resolves to is public: loopback, private,
  link-local, multicast, reserved, unspecified, CGNAT and cloud metadata
  addresses are refused unless the operator named the host in
  ``GEARS_HTTP_ALLOW_PRIVATE_HOSTS`` (a gear can never widen this);
* the connection goes to the address that was checked: the name is resolved
  once and the socket connects to that IP, while the Host header and TLS SNI
  and certificate check keep the name, so DNS rebinding between check and
  connect is impossible;
* redirects are followed by hand, each hop checked again like a new request;
* the body stays under a size cap and the whole exchange — name resolution
  included — under a time cap: the system resolver cannot be interrupted, so
  it runs in a thread the request stops waiting for at its deadline (at most
  :data:`MAX_LOOKUPS` such threads per installation, so a gear naming slow
  domains cannot pile them up).
"""

from __future__ import annotations

import http.client
import ipaddress
import json as jsonlib
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from gears_sdk.context import HttpResponse
from gears_sdk.permissions import host_allowed
from marketplace.settings import from_environ

ALLOW_PRIVATE_ENV = "GEARS_HTTP_ALLOW_PRIVATE_HOSTS"
MAX_RESPONSE_BYTES = 2 * 1024 * 1024
MAX_TIMEOUT_S = 10.0
MAX_REDIRECTS = 3
#: Name lookups one installation may have running at once (each bounded by its deadline).
MAX_LOOKUPS = 4
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DROP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_BLOCKED_NETS = tuple(ipaddress.ip_network(n) for n in (
    "100.64.0.0/10",       # shared address space (CGNAT); also Alibaba's metadata 100.100.100.200
    "169.254.0.0/16",      # link-local, AWS/GCP/Azure metadata 169.254.169.254
    "192.0.0.0/24", "198.18.0.0/15", "0.0.0.0/8", "240.0.0.0/4",
    "fd00:ec2::254/128",   # AWS metadata over IPv6
    "64:ff9b::/96", "64:ff9b:1::/48",  # NAT64 can reach private IPv4
))


class HttpRefused(PermissionError):
    """The runtime refused a gear's request (not a response from the server)."""


def allowed_private_hosts_from_env() -> frozenset[str]:
    """Host names or addresses the operator lets gears reach on private addresses."""
    return frozenset(h.lower() for h in from_environ("HTTP_ALLOW_PRIVATE_HOSTS"))


def address_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` must not be contacted, or ``None`` for a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return address_problem(embedded)
    for check, why in ((ip.is_loopback, "loopback"), (ip.is_link_local, "link-local"),
                       (ip.is_multicast, "multicast"), (ip.is_unspecified, "unspecified"),
                       (ip.is_private, "private"), (ip.is_reserved, "reserved")):
        if check:
            return why
    if any(ip in net for net in _BLOCKED_NETS if net.version == ip.version):
        return "reserved for infrastructure (CGNAT, metadata, benchmarking)"
    if not ip.is_global:
        return "not a public address"
    return None


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class HostHttp:
    """Performs requests for one installation, within its manifest's network list."""

    def __init__(self, network: Iterable[str], *, allow_private: Iterable[str] = (),
                 max_bytes: int = MAX_RESPONSE_BYTES, max_timeout: float = MAX_TIMEOUT_S):
        self.network = tuple(network)
        self.allow_private = frozenset(h.lower() for h in allow_private)
        self.max_bytes = max_bytes
        self.max_timeout = max_timeout
        self._lookups = threading.BoundedSemaphore(MAX_LOOKUPS)

    def lookup(self, host: str, port: int, end: float | None = None) -> list[Any]:
        """``getaddrinfo`` for ``host``, given up with ``TimeoutError`` at ``end``."""
        if end is None:
            end = time.monotonic() + self.max_timeout
        if not self._lookups.acquire(timeout=max(0.0, end - time.monotonic())):
            raise TimeoutError(f"resolving {host} ran out of time (earlier lookups are "
                               "still running)")
        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except BaseException as exc:  # handed to the waiting request
                box["error"] = exc
            finally:
                self._lookups.release()
                done.set()

        threading.Thread(target=run, name=f"gears-dns-{host[:40]}", daemon=True).start()
        if not done.wait(max(0.0, end - time.monotonic())):
            raise TimeoutError(f"resolving {host} took longer than the request's deadline")
        if "error" in box:
            exc = box["error"]
            if isinstance(exc, socket.gaierror):
                raise ConnectionError(f"cannot resolve {host}: {exc.strerror}") from None
            raise ConnectionError(f"cannot resolve {host}: {exc}") from None
        infos: list[Any] = box["infos"]
        return infos

    def resolve(self, host: str, port: int, end: float | None = None) -> str:
        """The address to connect to, after checking every address ``host`` has;
        the lookup ends by ``end`` (a ``time.monotonic()`` value) or raises ``TimeoutError``."""
        infos = self.lookup(host, port, end)
        addresses = [str(info[4][0]) for info in infos]
        if host.lower() not in self.allow_private:
            for addr in addresses:
                why = address_problem(ipaddress.ip_address(addr.split("%", 1)[0]))
                if why and addr not in self.allow_private:
                    raise HttpRefused(f"{host} resolves to {addr}, a {why} address; gears may "
                                      f"only reach public addresses (an operator can allow it "
                                      f"in {ALLOW_PRIVATE_ENV})")
        return addresses[0]

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                params: dict[str, Any] | None = None, json: Any = None,
                data: bytes | None = None, timeout: float | None = None,
                deadline: float | None = None) -> HttpResponse:
        """Make the request; raises ``HttpRefused``, ``TimeoutError`` or ``ConnectionError``."""
        limit = min(self.max_timeout, timeout or self.max_timeout)
        end = time.monotonic() + limit
        if deadline is not None:
            end = min(end, deadline)
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
        send_headers = {k: str(v) for k, v in (headers or {}).items()
                        if k.lower() not in _DROP_HEADERS}
        body = data
        if json is not None:
            body = jsonlib.dumps(json).encode("utf-8")
            send_headers.setdefault("Content-Type", "application/json")
        method = method.upper()
        for _ in range(MAX_REDIRECTS + 1):
            status, resp_headers, payload = self._one(method, url, send_headers, body, end)
            location = resp_headers.get("location")
            if status not in _REDIRECTS or not location:
                return HttpResponse(status, resp_headers, payload, url)
            new_url = urljoin(url, location)
            if urlsplit(new_url).hostname != urlsplit(url).hostname:
                send_headers = {k: v for k, v in send_headers.items()
                                if k.lower() not in ("authorization", "cookie")}
            if status == 303 or (status in (301, 302) and method == "POST"):
                method, body = "GET", None
            url = new_url
        raise HttpRefused(f"more than {MAX_REDIRECTS} redirects")

    def _one(self, method: str, url: str, headers: dict[str, str], body: bytes | None,
             end: float) -> tuple[int, dict[str, str], bytes]:
        if not host_allowed(url, self.network):
            parts = urlsplit(url)
            raise HttpRefused(f"{parts.netloc or url} is not listed in gear.json "
                              f"permissions.network (allowed: {', '.join(self.network) or 'none'})")
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        ip = self.resolve(host, port, end)
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request ran out of time")
        cls = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
        conn = cls(host, port, ip, remaining)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            chunks, size = [], 0
            while True:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("the response took too long")
                if conn.sock is not None:
                    conn.sock.settimeout(remaining)
                chunk = resp.read1(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_bytes:
                    raise HttpRefused(f"the response is larger than {self.max_bytes} bytes")
                chunks.append(chunk)
            resp_headers: dict[str, str] = {}
            for key, value in resp.getheaders():
                k = key.lower()
                resp_headers[k] = f"{resp_headers[k]}, {value}" if k in resp_headers else value
            return resp.status, resp_headers, b"".join(chunks)
        except (TimeoutError, HttpRefused):
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectionError(f"request to {host} failed: {exc}") from None
        finally:
            conn.close()
