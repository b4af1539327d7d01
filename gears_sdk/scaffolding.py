"""``gears new``: create a working gear directory from a kind's template.

The templates ship inside the SDK (``gears_sdk/scaffold/<kind>/``) so a new
gear always matches the SDK that will validate it. Files end in ``.tmpl`` so
nothing treats them as code before they are rendered; ``__module__`` in a path
becomes the gear's Python package name.
"""

from __future__ import annotations

import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from gears_sdk.errors import GearsError
from gears_sdk.hookspecs import KINDS
from gears_sdk.manifest import manifest_schema


def validate_name(name: str) -> None:
    """Raise :class:`GearsError` unless ``name`` is a valid ``publisher/gear``."""
    spec = manifest_schema()["properties"]["name"]
    if len(name) > spec["maxLength"] or not re.fullmatch(spec["pattern"], name):
        raise GearsError(
            f"{name!r} is not a valid gear name",
            code="invalid_name",
            hint=f"use {spec['description']}",
        )


def module_name(name: str) -> str:
    """The Python package name for gear ``publisher/my-gear``: ``my_gear``."""
    module = name.split("/", 1)[1].replace("-", "_")
    return f"gear_{module}" if module[0].isdigit() else module


def _walk(node: Traversable, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    out = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            out += _walk(child, (*prefix, child.name))
        else:
            out.append(((*prefix, child.name), child.read_text("utf-8")))
    return out


def scaffold_gear(name: str, kind: str, dest: str | Path | None = None) -> list[Path]:
    """Create a gear named ``name`` of ``kind`` in ``dest``; return the files written.

    ``dest`` defaults to the gear part of the name in the current directory.
    Refuses to write into a directory that is not empty.
    """
    validate_name(name)
    if kind not in KINDS:
        raise GearsError(f"unknown kind {kind!r}", code="invalid_kind",
                         hint="use one of " + ", ".join(KINDS))
    short = name.split("/", 1)[1]
    target = Path(dest) if dest is not None else Path(short)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise GearsError(f"{target} already exists and is not empty", code="dest_not_empty",
                         hint="choose another directory with --dir")
    module = module_name(name)
    values = {
        "name": name,
        "module": module,
        "kind": kind,
        "publisher": name.split("/", 1)[0],
        "title": short.replace("-", " ").capitalize(),
    }
    written = []
    for parts, text in _walk(resources.files("gears_sdk").joinpath("scaffold", kind)):
        rel = [p.replace("__module__", module) for p in parts]
        rel[-1] = rel[-1].removesuffix(".tmpl")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        path = target.joinpath(*rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        written.append(path)
    return written
