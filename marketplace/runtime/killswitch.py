"""The kill switch: poll the registry's signed kill list and stop quarantined gears.

A :class:`KillListPoller` runs beside a :class:`~marketplace.runtime.Runtime`.
Every ``interval`` seconds it fetches the list (``GET /api/v1/killlist``),
verifies its Ed25519 signature over the canonical JSON of ``{issued_at,
entries}`` against the registry's public keys, and stops every worker
whose gear is listed (matched by archive sha256, or by name and version,
which the registry never reuses). From then on it refuses to start them
again: :meth:`KillListPoller.attach` guards the runtime's ``start``.

A list that is unsigned, signed by an unknown key, badly signed, malformed
or older than the last one applied is rejected and logged, and the last
good list stays in force: a network attacker can neither inject entries
nor roll back to a list from before a quarantine. A list that cannot be
fetched leaves the last good list in force too.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from marketplace.runtime.errors import GearCallError, SandboxError
from marketplace.runtime.installation import Installation
from marketplace.runtime.loader import MARKER, LoaderError
from marketplace.runtime.runtime import Runtime
from marketplace.runtime.signatures import canonical_json, key_id, verify_bytes

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 30.0
Fetch = Callable[[], Mapping[str, Any]]


class KillListError(LoaderError):
    """A kill list that is not applied: unsigned, forged, malformed or stale."""


@dataclass(frozen=True)
class KillEntry:
    name: str
    version: str
    sha256: str
    reason: str


def verify_killlist(document: Mapping[str, Any],
                    public_keys: Mapping[str, Ed25519PublicKey]) -> list[KillEntry]:
    """The entries of a correctly signed list; ``KillListError`` otherwise."""
    if not isinstance(document, Mapping):
        raise KillListError("the kill list is not a JSON object", code="invalid_killlist")
    body = {"issued_at": document.get("issued_at"), "entries": document.get("entries")}
    try:
        verify_bytes(canonical_json(body), document.get("signature"), document.get("key_id"),
                     public_keys, what="the kill list")
    except LoaderError as exc:
        raise KillListError(exc.message, code=exc.code) from None
    entries = body["entries"]
    if not isinstance(entries, list) or not isinstance(body["issued_at"], str):
        raise KillListError("the kill list has no entries list or issued_at",
                            code="invalid_killlist")
    try:
        return [KillEntry(str(e["name"]), str(e["version"]), str(e["sha256"]),
                          str(e.get("reason") or "")) for e in entries]
    except (KeyError, TypeError):
        raise KillListError("a kill list entry lacks name, version or sha256",
                            code="invalid_killlist") from None


def installation_sha256(inst: Installation) -> str | None:
    """The archive digest of an installation's code: its cache marker, else its directory
    name when that is a digest (the cache's layout)."""
    try:
        marker = json.loads((Path(inst.gear_dir) / MARKER).read_text("utf-8"))
        if isinstance(marker, dict) and isinstance(marker.get("sha256"), str):
            return str(marker["sha256"])
    except (OSError, ValueError):
        pass
    name = Path(inst.gear_dir).name
    return name if len(name) == 64 and all(c in "0123456789abcdef" for c in name) else None


class KillListPoller:
    """Polls ``fetch`` every ``interval`` seconds and enforces the list on ``runtime``.

    ``public_key`` is one key or ``{key_id: key}`` (current and retired keys).
    ``fetch`` returns the decoded JSON body; it is called from the poller's thread.
    """

    def __init__(self, fetch: Fetch,
                 public_key: Ed25519PublicKey | Mapping[str, Ed25519PublicKey],
                 runtime: Runtime, interval: float = DEFAULT_INTERVAL, *,
                 on_kill: Callable[[str, KillEntry], None] | None = None):
        self.fetch = fetch
        self.public_keys = ({key_id(public_key): public_key}
                            if isinstance(public_key, Ed25519PublicKey) else dict(public_key))
        self.runtime = runtime
        self.interval = interval
        self.on_kill = on_kill
        self.entries: list[KillEntry] = []
        self.issued_at: str | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._attached = False
        self._original_start: Callable[[Installation], Any] | None = None

    # -- decisions ----------------------------------------------------------

    def blocked(self, inst: Installation) -> KillEntry | None:
        """The entry that forbids ``inst``, or ``None``."""
        sha = installation_sha256(inst)
        version = str(inst.manifest.version)
        with self._lock:
            for e in self.entries:
                if (sha is not None and e.sha256 == sha) or (
                        e.name == inst.manifest.name and e.version == version):
                    return e
        return None

    def attach(self) -> KillListPoller:
        """Guard ``runtime.start`` so a listed gear can never start (again)."""
        if self._attached:
            return self
        original = self.runtime.start

        def guarded_start(inst: Installation) -> Any:
            entry = self.blocked(inst)
            if entry is not None:
                raise SandboxError(f"{inst.gear} {entry.version} is quarantined by the "
                                   f"registry: {entry.reason}", code="quarantined")
            return original(inst)

        self._original_start = original
        self.runtime.start = guarded_start  # type: ignore[method-assign]
        self._attached = True
        return self

    def detach(self) -> None:
        """Give ``runtime.start`` back its unguarded behaviour (the poller is retired)."""
        if self._attached and self._original_start is not None:
            self.runtime.start = self._original_start  # type: ignore[method-assign,assignment]
            self._attached = False

    # -- polling ------------------------------------------------------------

    def poll_once(self) -> bool:
        """Fetch, verify and enforce once; ``False`` when the list was not applied."""
        try:
            document = self.fetch()
            entries = verify_killlist(document, self.public_keys)
            issued = str(document["issued_at"])
            if self.issued_at is not None and _parse(issued) < _parse(self.issued_at):
                raise KillListError(f"the kill list was issued at {issued}, before the one "
                                    f"in force ({self.issued_at})", code="stale_killlist")
        except KillListError as exc:
            self.last_error = f"{exc.code}: {exc.message}"
            log.error("kill list rejected (%s); keeping the previous one", self.last_error)
            return False
        except Exception as exc:  # the registry may be unreachable: keep the last list
            self.last_error = f"fetch_failed: {exc}"
            log.warning("kill list not fetched (%s); keeping the previous one", exc)
            return False
        with self._lock:
            self.entries, self.issued_at, self.last_error = entries, issued, None
        self.enforce()
        return True

    def enforce(self) -> list[str]:
        """Stop every running installation the list names; returns their ids."""
        stopped = []
        for inst_id, inst in self._running():
            entry = self.blocked(inst)
            if entry is None:
                continue
            log.warning("stopping %s (%s %s): quarantined: %s", inst_id, entry.name,
                        entry.version, entry.reason)
            self.runtime.stop(inst_id)
            stopped.append(inst_id)
            if self.on_kill is not None:
                self.on_kill(inst_id, entry)
        return stopped

    def _running(self) -> list[tuple[str, Installation]]:
        out = []
        for inst_id in list(self.runtime.health()):
            try:
                out.append((inst_id, self.runtime.installation(inst_id)))
            except GearCallError:
                log.debug("%s stopped while the kill list was applied", inst_id)
        return out

    def start(self) -> KillListPoller:
        """Attach, poll once now, then keep polling in a daemon thread."""
        self.attach()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="gears-killlist",
                                            daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        """Stop polling and detach from the runtime."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
            self._thread = None
        self.detach()


def _parse(stamp: str) -> datetime:
    try:
        return datetime.fromisoformat(stamp)
    except ValueError:
        raise KillListError(f"issued_at {stamp!r} is not an ISO timestamp",
                            code="invalid_killlist") from None


def registry_fetcher(base_url: str, *, timeout: float = 10.0) -> Fetch:
    """A ``fetch`` for :class:`KillListPoller` reading ``<base_url>/api/v1/killlist``."""
    import requests

    url = base_url.rstrip("/").removesuffix("/api/v1") + "/api/v1/killlist"

    def fetch() -> Mapping[str, Any]:
        resp = requests.get(url, timeout=timeout)
        resp.raise_for_status()
        body: Mapping[str, Any] = resp.json()
        return body

    return fetch
