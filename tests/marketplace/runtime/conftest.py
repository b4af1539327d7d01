"""Fixtures for the runtime tests: gear directories written on the fly, runtimes per level."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gears_sdk.manifest import load_manifest
from marketplace.runtime import Installation, Runtime
from marketplace.runtime.sandbox import level_rank, probe_sandbox_level

GearFactory = Callable[..., Path]


def skip_unless_level(level: str) -> None:
    """Skip (with the probe's reasons) when the host cannot reach ``level``."""
    report = probe_sandbox_level()
    if level_rank(report.level) < level_rank(level):
        pytest.skip(f"sandbox level {level!r} unavailable here (host reaches "
                    f"{report.level!r}: {'; '.join(report.notes)})")


@pytest.fixture
def make_gear(tmp_path: Path) -> GearFactory:
    """Write an extension gear whose module is ``source``; returns its directory."""
    counter = iter(range(1000))

    def make(source: str, *, name: str | None = None, hooks: tuple[str, ...] = ("gear_on_event",),
             read: tuple[str, ...] = ("traits.*",), write: tuple[str, ...] = ("traits.out",),
             network: tuple[str, ...] = (), timeout_ms: int = 2000, memory_mb: int = 64,
             kind: str = "extension", permissions: dict[str, Any] | None = None) -> Path:
        n = next(counter)
        gear_name = name or f"acme/gear-{n}"
        module = gear_name.split("/", 1)[1].replace("-", "_")
        root = tmp_path / f"gear{n}"
        (root / module).mkdir(parents=True)
        (root / module / "__init__.py").write_text(
            "from gears_sdk import hookimpl\n" + textwrap.dedent(source))
        (root / "README.md").write_text("test gear\n")
        manifest: dict[str, Any] = {
            "name": gear_name, "version": "1.0.0", "kind": kind, "title": "Test gear",
            "summary": "A gear written by the runtime tests.", "entrypoint": module,
            "hooks": list(hooks), "engine": ">=1.0.0 <2.0.0",
            "permissions": {"network": list(network),
                            "profile": {"read": list(read), "write": list(write)},
                            **(permissions or {})},
            "limits": {"memory_mb": memory_mb, "timeout_ms": timeout_ms},
            "config_schema": {"type": "object", "properties": {}},
            "readme": "README.md",
        }
        (root / "gear.json").write_text(json.dumps(manifest))
        return root

    return make


@pytest.fixture
def installation(tmp_path: Path) -> Callable[..., Installation]:
    counter = iter(range(1000))

    def build(gear_dir: Path, *, id: str | None = None, config: dict[str, Any] | None = None,
              secrets: dict[str, str] | None = None) -> Installation:
        iid = id or f"inst-{next(counter)}"
        return Installation(id=iid, workspace="ws-test", gear_dir=gear_dir,
                            manifest=load_manifest(gear_dir), config=config or {},
                            secrets=secrets or {}, data_dir=tmp_path / "data" / iid)

    return build


@pytest.fixture
def runtime_factory() -> Iterator[Callable[..., Runtime]]:
    """Runtimes at the host's best level (override with ``level=``); closed after the test."""
    made: list[Runtime] = []

    def make(**kwargs: Any) -> Runtime:
        kwargs.setdefault("min_level", "dev-unsafe")
        kwargs.setdefault("allow_private_hosts", frozenset())
        if "level" in kwargs:
            skip_unless_level(kwargs["level"])
        rt = Runtime(**kwargs)
        made.append(rt)
        return rt

    yield make
    for rt in made:
        rt.close()
