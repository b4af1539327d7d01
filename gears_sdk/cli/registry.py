"""Registry commands: ``login``, ``publish``, ``yank``, ``search``, ``info``, ``status``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gears_sdk.archive import build_archive
from gears_sdk.cli.develop import validate_dir
from gears_sdk.client import RegistryClient, client_from_settings
from gears_sdk.errors import GearsError
from gears_sdk.hookspecs import KINDS
from gears_sdk.settings import env_token, save_login


@click.command("login")
@click.option("--registry", required=True, metavar="URL", help="The registry's base URL.")
@click.option("--token", help="An API token (default: GEARS_TOKEN, else a prompt).")
def login_command(registry: str, token: str | None) -> None:
    """Check an API token against a registry and remember both."""
    token = token or env_token() or click.prompt("API token", hide_input=True)
    if not registry.startswith(("http://", "https://")):
        raise GearsError(f"{registry!r} is not an http(s) URL", code="invalid_url",
                         hint="e.g. gears login --registry https://gears.example.com")
    me = RegistryClient(registry, token).whoami()
    path = save_login(registry, token)
    publishers = ", ".join(me.get("publishers") or []) or "none"
    click.echo(f"logged in to {registry.rstrip('/')} as {me.get('email')} ({me.get('role')}); "
               f"publishers: {publishers}")
    click.echo(f"saved to {path}")


def _progress_printer() -> Any:
    last = {"pct": -1}

    def show(sent: int, total: int) -> None:
        pct = sent * 100 // total if total else 100
        if pct != last["pct"]:
            last["pct"] = pct
            end = "\n" if sent >= total else ""
            click.echo(f"\ruploading {sent}/{total} bytes ({pct}%)", err=True, nl=False)
            if end:
                click.echo("", err=True)

    return show


@click.command("publish")
@click.argument("source", default=".", type=click.Path(exists=True, path_type=Path))
def publish_command(source: Path) -> None:
    """Upload a .gear FILE, or build and upload a gear DIR (default: .)."""
    client = client_from_settings()
    if source.is_dir():
        validate_dir(source)
        built = build_archive(source)
        click.echo(f"built {built.path} (sha256: {built.sha256})", err=True)
        source = built.path
    version = client.publish(source, progress=_progress_printer())
    click.echo(f"published {version.get('name')} {version.get('version')}: "
               f"status {version.get('status')}")
    if version.get("web_url"):
        click.echo(version["web_url"])


@click.command("yank")
@click.argument("name")
@click.argument("version")
@click.option("--reason", required=True, help="Why; shown to everyone who installed it.")
def yank_command(name: str, version: str, reason: str) -> None:
    """Hide VERSION of gear NAME from new installs."""
    result = client_from_settings().yank(name, version, reason) or {}
    click.echo(f"yanked {name} {version}" + (f": {result['yank_reason']}"
                                             if result.get("yank_reason") else ""))


def _table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@click.command("search")
@click.argument("query", default="")
@click.option("--kind", type=click.Choice(KINDS))
@click.option("--category", help="Only gears in this category.")
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True)
def search_command(query: str, kind: str | None, category: str | None, page: int) -> None:
    """Search the registry's approved gears."""
    result = client_from_settings().search(query, kind=kind, category=category, page=page)
    items = result.get("items") or []
    if not items:
        click.echo("no gears found")
        return
    rows = [[g.get("name", ""), str(g.get("latest_version") or "-"), g.get("kind", ""),
             str(g.get("install_count", 0)), _cut(g.get("summary") or "", 60)] for g in items]
    _table(rows, ["name", "latest", "kind", "installs", "summary"])
    total, per_page = result.get("total", len(items)), result.get("per_page") or len(items)
    click.echo(f"{total} gear(s); page {result.get('page', page)} of "
               f"{max(1, -(-int(total) // int(per_page)))}")


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_version(v: dict[str, Any]) -> None:
    click.echo(f"{v.get('name')} {v.get('version')} ({v.get('kind')}): {v.get('title')}")
    status = v.get("status")
    if v.get("quarantined"):
        status = f"{status}, QUARANTINED"
    if v.get("yanked"):
        status = f"{status}, yanked" + (f" ({v['yank_reason']})" if v.get("yank_reason") else "")
    click.echo(f"  status:       {status}")
    if v.get("review_reason"):
        click.echo(f"  review:       {v['review_reason']}")
    for key in ("summary", "created_at", "sha256", "size", "web_url", "download_url"):
        if v.get(key) not in (None, ""):
            click.echo(f"  {key + ':':<13} {v[key]}")
    findings = v.get("findings") or []
    if findings:
        click.echo(f"findings ({len(findings)}):")
        for f in findings:
            where = f" at {f['path']}" if f.get("path") else ""
            level = f.get("severity") or f.get("level") or "info"
            click.echo(f"  - [{level}] {f.get('code', '')}{where}: {f.get('message', '')}")


@click.command("info")
@click.argument("spec", metavar="NAME[@VERSION]")
def info_command(spec: str) -> None:
    """Show a gear and its versions, or one version with NAME@VERSION."""
    name, _, version = spec.partition("@")
    client = client_from_settings()
    if version:
        _print_version(client.version(name, version))
        return
    g = client.gear(name)
    click.echo(f"{g.get('name')} ({g.get('kind')}): {g.get('title')}")
    click.echo(f"  {g.get('summary') or ''}")
    click.echo(f"  publisher:   {g.get('publisher')}")
    click.echo(f"  categories:  {', '.join(g.get('categories') or []) or '-'}")
    click.echo(f"  latest:      {g.get('latest_version') or '-'}")
    click.echo(f"  installs:    {g.get('install_count', 0)}")
    versions = g.get("versions") or []
    if versions:
        rows = [[v.get("version", ""), v.get("status", ""), "yes" if v.get("yanked") else "",
                 str(v.get("created_at") or "")] for v in versions]
        _table(rows, ["version", "status", "yanked", "created"])


@click.command("status")
@click.argument("name")
@click.argument("version")
def status_command(name: str, version: str) -> None:
    """Show the review status of VERSION of gear NAME, with the vetting findings."""
    _print_version(client_from_settings().version(name, version))


COMMANDS = [login_command, publish_command, yank_command, search_command, info_command,
            status_command]
