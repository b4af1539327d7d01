"""What every vetting check receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gears_sdk.archive import GearArchive


@dataclass(frozen=True)
class SandboxOptions:
    """How the dynamic test runs the gear: the production defaults unless set."""

    enabled: bool = True
    level: str | None = None
    min_level: str | None = None
    max_calls: int = 12


@dataclass(frozen=True)
class VetContext:
    """The archive under review and what it is compared with.

    ``previous_manifest`` is the manifest of the gear's last *approved*
    version (``None`` for a first version): the baseline for capability growth.
    """

    archive: GearArchive
    previous_manifest: dict[str, Any] | None = None
    previous_version: str | None = None
    sandbox: SandboxOptions = field(default_factory=SandboxOptions)

    @property
    def manifest(self) -> Any:
        return self.archive.manifest

    def python_files(self) -> list[str]:
        return [n for n in self.archive.names if n.endswith(".py")]

    def text(self, name: str) -> str | None:
        """A member as text, or ``None`` when it is not UTF-8."""
        try:
            return self.archive.read(name).decode("utf-8")
        except UnicodeDecodeError:
            return None
