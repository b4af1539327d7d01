"""Gears written on the fly for the benchmarks: directories and reproducible archives."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import textwrap
from pathlib import Path
from typing import Any

from gears_sdk.archive import build_archive_bytes

#: Counts every event it sees: the cheapest useful extension.
COUNTER = """
@hookimpl
def gear_on_event(event, profile, config, ctx):
    return {"increment": {"traits.events_seen": 1}}
"""

#: Tags the profile with the event's type.
TAGGER = """
@hookimpl
def gear_on_event(event, profile, config, ctx):
    return {"set": {"traits.last_type": event.get("type")}}
"""

#: Renders a greeting: the cheapest useful template.
GREETER = """
import html

@hookimpl
def gear_render(profile, content, config, ctx):
    name = (profile.get("attributes") or {}).get("first_name", "there")
    return {"html": "<p>Hello, " + html.escape(str(name)) + "</p>"}
"""

EXTENSION_WRITES = {COUNTER: ["traits.events_seen"], TAGGER: ["traits.last_type"]}


def manifest(name: str, version: str = "1.0.0", *, kind: str = "extension",
             hooks: list[str] | None = None, read: list[str] | None = None,
             write: list[str] | None = None, summary: str | None = None,
             categories: list[str] | None = None) -> dict[str, Any]:
    """A valid ``gear.json`` for a benchmark gear."""
    module = name.split("/", 1)[1].replace("-", "_")
    return {
        "name": name,
        "version": version,
        "kind": kind,
        "title": name.split("/", 1)[1].replace("-", " ").title(),
        "summary": summary or f"A {kind} gear used by the benchmarks.",
        "entrypoint": module,
        "hooks": hooks or (["gear_render"] if kind == "template" else ["gear_on_event"]),
        "engine": ">=1.0.0 <2.0.0",
        "permissions": {"network": [],
                        "profile": {"read": read if read is not None else ["attributes.*",
                                                                           "traits.*"],
                                    "write": write or []}},
        "limits": {"memory_mb": 64, "timeout_ms": 2000},
        "config_schema": {"type": "object", "properties": {}},
        "categories": categories or ["benchmarks"],
        "license": "MIT",
        "readme": "README.md",
    }


def write_gear(root: Path, man: dict[str, Any], source: str, *, filler: int = 0,
               seed: int = 0) -> Path:
    """Write a gear directory under ``root``; ``filler`` adds about that many archive bytes.

    The filler is ``filler`` random bytes as base64 text in a data file: deflate
    packs base64 back to about the random bytes' size, so the archive really
    grows by about ``filler`` bytes.
    """
    gear_dir = root / man["name"].replace("/", "__") / man["version"]
    pkg = gear_dir / man["entrypoint"]
    pkg.mkdir(parents=True, exist_ok=True)
    (gear_dir / "gear.json").write_text(json.dumps(man, indent=2))
    (pkg / "__init__.py").write_text("from gears_sdk import hookimpl\n"
                                     + textwrap.dedent(source))
    (gear_dir / "README.md").write_text(f"# {man['title']}\n\n{man['summary']}\n")
    if filler:
        raw = random.Random(f"{man['name']}@{man['version']}/{seed}").randbytes(filler)
        (pkg / "data.txt").write_text(base64.b64encode(raw).decode() + "\n")
    return gear_dir


def gear_archive(root: Path, name: str, version: str = "1.0.0", *, source: str = COUNTER,
                 filler: int = 0) -> tuple[bytes, str]:
    """A built ``.gear`` archive and its sha256."""
    write = EXTENSION_WRITES.get(source, [])
    kind = "template" if source == GREETER else "extension"
    man = manifest(name, version, kind=kind, write=write)
    data, _ = build_archive_bytes(write_gear(root, man, source, filler=filler))
    return data, hashlib.sha256(data).hexdigest()
