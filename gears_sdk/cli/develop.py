"""Local development commands: ``new``, ``validate``, ``build``, ``inspect``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from gears_sdk.archive import build_archive, read_archive
from gears_sdk.gear_dir import check_gear_dir
from gears_sdk.manifest import Manifest, Permissions
from gears_sdk.scaffolding import KINDS, scaffold_gear


@click.command("new")
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), required=True, help="What the gear does.")
@click.option("--dir", "dest", type=click.Path(file_okay=False, path_type=Path),
              help="Where to create it (default: the gear part of NAME).")
def new_command(name: str, kind: str, dest: Path | None) -> None:
    """Create a new gear NAME (publisher/gear) from a working template."""
    files = scaffold_gear(name, kind, dest)
    root = dest or Path(name.split("/", 1)[1])
    click.echo(f"created {kind} {name} in {root}/")
    for path in files:
        click.echo(f"  {path.relative_to(root)}")
    click.echo(f"next: cd {root} && pytest && gears validate")


def describe(manifest: Manifest) -> str:
    """``acme/hello 0.1.0 (template)``."""
    return f"{manifest.name} {manifest.version} ({manifest.kind})"


def validate_dir(gear_dir: Path) -> Manifest:
    """Validate a gear directory (every manifest problem is reported at once)."""
    manifest, _module = check_gear_dir(gear_dir)
    return manifest


@click.command("validate")
@click.argument("gear_dir", default=".", type=click.Path(path_type=Path))
def validate_command(gear_dir: Path) -> None:
    """Check a gear directory: manifest, readme, entrypoint and hooks."""
    click.echo(f"ok: {describe(validate_dir(gear_dir))}")


@click.command("build")
@click.argument("gear_dir", default=".", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the .gear file (default: GEAR_DIR/dist).")
def build_command(gear_dir: Path, out_dir: Path | None) -> None:
    """Validate a gear directory and build its reproducible .gear archive."""
    validate_dir(gear_dir)
    built = build_archive(gear_dir, out_dir)
    click.echo(str(built.path))
    click.echo(f"sha256: {built.sha256}")


def archive_summary(source: Path | str) -> dict[str, Any]:
    """What ``gears inspect`` shows, as a JSON-ready dict."""
    archive = read_archive(source)
    m = archive.manifest
    hashes = archive.file_hashes()
    return {
        "name": m.name,
        "version": str(m.version),
        "kind": m.kind,
        "title": m.title,
        "hooks": list(m.hooks),
        "permissions": m.raw.get("permissions") or {},
        "engine": m.raw["engine"],
        "requires": m.raw.get("requires") or {},
        "sha256": archive.sha256,
        "size": archive.size,
        "files": [
            {"name": n, "size": len(archive.read(n)), "sha256": hashes.get(n)}
            for n in archive.names
        ],
    }


def _print_summary(s: dict[str, Any]) -> None:
    click.echo(f"{s['name']} {s['version']} ({s['kind']}): {s['title']}")
    click.echo(f"  hooks:       {', '.join(s['hooks'])}")
    click.echo(f"  engine:      {s['engine']}")
    requires = ", ".join(f"{k} {v}" for k, v in s["requires"].items()) or "-"
    click.echo(f"  requires:    {requires}")
    perms = s["permissions"]
    click.echo(f"  network:     {', '.join(perms.get('network') or []) or '-'}")
    profile = perms.get("profile") or {}
    click.echo(f"  profile:     read {', '.join(profile.get('read') or []) or '-'}; "
               f"write {', '.join(profile.get('write') or []) or '-'}")
    typed = Permissions.from_dict(perms)
    for key, access in (("catalog", typed.catalog), ("events", typed.events)):
        if access.read or access.write:
            click.echo(f"  {key + ':':<12} read {', '.join(access.read) or '-'}; "
                       f"write {', '.join(access.write) or '-'}")
    if typed.secrets:
        click.echo(f"  {'secrets:':<12} {', '.join(typed.secrets)}")
    click.echo(f"files ({len(s['files'])}):")
    width = max((len(f["name"]) for f in s["files"]), default=0)
    for f in s["files"]:
        click.echo(f"  {f['name']:<{width}}  {f['size']:>8}  {f['sha256']}")
    click.echo(f"size: {s['size']}")
    click.echo(f"sha256: {s['sha256']}")


@click.command("inspect")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def inspect_command(file: Path, as_json: bool) -> None:
    """Show what a .gear archive contains: manifest summary, files, sha256."""
    summary = archive_summary(file)
    if as_json:
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
    else:
        _print_summary(summary)


COMMANDS = [new_command, validate_command, build_command, inspect_command]
