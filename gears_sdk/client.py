"""A small client for the registry's JSON API (``/api/v1``).

Every method returns the parsed JSON of a successful answer. Failures become
:class:`RegistryError` carrying the API's stable ``code``, its ``message``
and the ``details`` list (``[{"path", "message", "code"}]``) so the CLI can
show exactly what the registry refused; a registry that cannot be reached
raises :class:`RegistryUnreachable`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import requests

from gears_sdk import __version__
from gears_sdk.errors import GearsError
from gears_sdk.settings import load_settings

API = "/api/v1"
ProgressCallback = Callable[[int, int], None]


class RegistryError(GearsError):
    """The registry answered with an error; ``status`` is the HTTP status."""

    code = "registry_error"

    def __init__(self, message: str, *, code: str | None = None, status: int = 0,
                 details: list[dict[str, Any]] | None = None, hint: str | None = None):
        super().__init__(message, code=code, hint=hint)
        self.status = status
        self.details = list(details or [])


class RegistryUnreachable(GearsError):
    """The registry could not be reached at all (DNS, refused, timeout, TLS)."""

    code = "registry_unreachable"


class MultipartFile:
    """A ``multipart/form-data`` body with one file field, read in chunks.

    Streaming keeps memory flat for large archives and lets the caller show
    progress; ``__len__`` gives requests a ``Content-Length`` instead of
    chunked encoding, which every WSGI server accepts.
    """

    def __init__(self, path: Path, field: str = "file",
                 progress: ProgressCallback | None = None):
        self.boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        head = (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
                f"filename=\"{path.name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
        self._head = head.encode("utf-8")
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._file_size = path.stat().st_size
        self._file: BinaryIO = path.open("rb")
        self._parts: list[bytes | BinaryIO] = [self._head, self._file, self._tail]
        self.sent = 0
        self.progress = progress

    def __len__(self) -> int:
        return len(self._head) + self._file_size + len(self._tail)

    def read(self, size: int = -1) -> bytes:
        size = size if size and size > 0 else 64 * 1024
        out = b""
        while self._parts and len(out) < size:
            part = self._parts[0]
            if isinstance(part, bytes):
                take = part[: size - len(out)]
                out += take
                rest = part[len(take):]
                if rest:
                    self._parts[0] = rest
                else:
                    self._parts.pop(0)
            else:
                chunk = part.read(size - len(out))
                if chunk:
                    out += chunk
                else:
                    part.close()
                    self._parts.pop(0)
        self.sent += len(out)
        if self.progress and out:
            self.progress(self.sent, len(self))
        return out

    def close(self) -> None:
        self._file.close()


def _error_from(response: requests.Response) -> RegistryError:
    try:
        body = response.json()
    except ValueError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    hint = None
    if response.status_code == 401:
        hint = "log in again with 'gears login' or set GEARS_TOKEN"
    elif response.status_code == 403:
        hint = "your token lacks the scope, or you are not a member of this publisher"
    if isinstance(err, dict) and err.get("message"):
        details = [d for d in err.get("details") or [] if isinstance(d, dict)]
        return RegistryError(str(err["message"]), code=err.get("code"),
                             status=response.status_code, details=details, hint=hint)
    reason = response.reason or "error"
    return RegistryError(f"the registry answered {response.status_code} {reason}",
                         code=f"http_{response.status_code}", status=response.status_code,
                         hint=hint)


def split_name(name: str) -> tuple[str, str]:
    """``acme/rfm-score`` → ``("acme", "rfm-score")``, with a clear error otherwise."""
    publisher, sep, gear = name.partition("/")
    if not sep or not publisher or not gear or "/" in gear:
        raise GearsError(f"{name!r} is not a gear name", code="invalid_name",
                         hint="write publisher/gear, e.g. acme/rfm-score")
    return publisher, gear


class RegistryClient:
    """Talks to one registry as one token's owner."""

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 60.0,
                 session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = f"gears-cli/{__version__}"

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", None) or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.setdefault("Accept", "application/json")
        url = f"{self.base_url}{API}{path}"
        try:
            response = self.session.request(method, url, headers=headers, timeout=self.timeout,
                                            **kwargs)
        except requests.exceptions.RequestException as exc:
            raise RegistryUnreachable(
                f"cannot reach the registry at {self.base_url}: {type(exc).__name__}",
                hint="check the URL (gears login --registry URL, or GEARS_REGISTRY) "
                     "and your network") from None
        if not response.ok:
            raise _error_from(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise RegistryError(f"the registry at {self.base_url} did not answer with JSON "
                                f"({method} {path})", code="bad_response",
                                status=response.status_code) from None

    @staticmethod
    def _gear_path(name: str, version: str | None = None) -> str:
        publisher, gear = split_name(name)
        path = f"/gears/{quote(publisher, safe='')}/{quote(gear, safe='')}"
        return f"{path}/{quote(version, safe='')}" if version else path

    def whoami(self) -> dict[str, Any]:
        """Who the token belongs to: ``{"email", "role", "scopes", "publishers"}``."""
        result: dict[str, Any] = self._request("GET", "/whoami")
        return result

    def publish(self, archive: str | Path, progress: ProgressCallback | None = None) -> Any:
        """Upload a ``.gear`` file; returns the new version's JSON."""
        body = MultipartFile(Path(archive), progress=progress)
        try:
            return self._request("POST", "/gears", data=body,
                                 headers={"Content-Type": body.content_type,
                                          "Content-Length": str(len(body))})
        finally:
            body.close()

    def yank(self, name: str, version: str, reason: str) -> Any:
        """Hide a version from new installs; existing installs keep working."""
        return self._request("POST", self._gear_path(name, version) + "/yank",
                             json={"reason": reason})

    def search(self, query: str = "", *, kind: str | None = None, category: str | None = None,
               page: int = 1, per_page: int | None = None) -> Any:
        """``{"items": [gear...], "total", "page", "per_page"}``."""
        params: dict[str, Any] = {"q": query, "page": page}
        if kind:
            params["kind"] = kind
        if category:
            params["category"] = category
        if per_page:
            params["per_page"] = per_page
        return self._request("GET", "/gears", params=params)

    def gear(self, name: str) -> Any:
        """A gear with its versions."""
        return self._request("GET", self._gear_path(name))

    def version(self, name: str, version: str) -> Any:
        """One version, including its review status."""
        return self._request("GET", self._gear_path(name, version))


def client_from_settings(registry: str | None = None, token: str | None = None) -> RegistryClient:
    """A client for the stored login (environment first); errors if none is set."""
    settings = load_settings()
    url = registry or settings.registry
    if not url:
        raise GearsError("no registry is configured", code="no_registry",
                         hint="run 'gears login --registry URL' or set GEARS_REGISTRY")
    return RegistryClient(url, token or settings.token, timeout=settings.timeout)
