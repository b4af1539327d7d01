"""An installation: one gear version installed into one workspace."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gears_sdk.manifest import Manifest
from marketplace.runtime.state import MemoryStateStore, StateStore


@dataclass
class Installation:
    """Everything the runtime needs to run one installed gear.

    ``gear_dir`` is the unpacked, verified code (mounted read-only);
    ``data_dir`` is the only place the gear may write. ``config`` holds the
    non-secret config values (the hooks' ``config`` argument); ``secrets``
    the decrypted secret ones, which the gear reads one by one through
    ``ctx.secrets``. ``trusted`` exempts first-party gears from the
    minimum sandbox level; marketplace gears are never trusted.
    """

    id: str
    workspace: str
    gear_dir: Path
    manifest: Manifest
    config: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    data_dir: Path | None = None
    state: StateStore | None = None
    trusted: bool = False

    def __post_init__(self) -> None:
        self.gear_dir = Path(self.gear_dir)
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)
        if self.state is None:
            self.state = MemoryStateStore(self.manifest.limits.get("state_kb", 256))

    @property
    def gear(self) -> str:
        return self.manifest.name
