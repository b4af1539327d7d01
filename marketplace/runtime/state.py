"""``ctx.state`` on the host: a small key-value store per installation.

Stores only hold JSON values and refuse to grow past the manifest's
``limits.state_kb``. The in-memory store is for tests and ephemeral engines;
the JSON-file store keeps one file per installation and writes it
atomically. Keep that file outside the directory the gear can write (its
data dir), or the gear could edit its own store behind the host's back —
harmless to others, but it bypasses the size limit.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol


class StateStore(Protocol):
    """What the runtime needs from a state backend."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...

    def delete(self, key: str) -> None: ...

    def keys(self) -> list[str]: ...


def _check(data: dict[str, Any], limit_bytes: int) -> None:
    size = len(json.dumps(data, separators=(",", ":"), allow_nan=False))
    if size > limit_bytes:
        raise ValueError(f"state would hold {size} bytes; the limit is {limit_bytes} "
                         "(limits.state_kb in gear.json)")


class MemoryStateStore:
    """A dict with the same rules as the real stores."""

    def __init__(self, limit_kb: int = 256):
        self.limit_bytes = limit_kb * 1024
        self.data: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError("state keys must be strings")
        with self._lock:
            new = {**self.data, key: json.loads(json.dumps(value, allow_nan=False))}
            _check(new, self.limit_bytes)
            self.data = new

    def delete(self, key: str) -> None:
        with self._lock:
            self.data.pop(key, None)

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self.data)


class JsonFileStateStore(MemoryStateStore):
    """A :class:`MemoryStateStore` persisted to one JSON file, replaced atomically."""

    def __init__(self, path: str | Path, limit_kb: int = 256):
        super().__init__(limit_kb)
        self.path = Path(path)
        if self.path.exists():
            raw = self.path.read_bytes()[: self.limit_bytes + 1]
            loaded = json.loads(raw) if len(raw) <= self.limit_bytes else {}
            self.data = loaded if isinstance(loaded, dict) else {}

    def set(self, key: str, value: Any) -> None:
        super().set(key, value)
        self._save()

    def delete(self, key: str) -> None:
        super().delete(key)
        self._save()

    def _save(self) -> None:
        with self._lock:
            text = json.dumps(self.data, separators=(",", ":"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, self.path)
