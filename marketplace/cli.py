"""``marketplace``: the operator CLI.

Thin commands over the service functions. Settings are resolved exactly as
the server resolves them (:func:`marketplace.create_app`). Errors the user can
fix print ``error: …`` on stderr and exit with status 1, without a traceback.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import timedelta
from typing import Any

import click
from flask import Flask
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from marketplace import db, demo
from marketplace.accounts import service, tokens
from marketplace.app import create_app
from marketplace.audit import SystemActor
from marketplace.blobs import get_blob_store
from marketplace.cli_context import database_problem, get_app
from marketplace.db import session_scope
from marketplace.engine import shutdown as engine_shutdown
from marketplace.engine.cli import engine_group
from marketplace.errors import MarketplaceError
from marketplace.maintenance import collect_garbage
from marketplace.models import Role, User
from marketplace.registry.signing import key_dir, keyring
from marketplace.server import serve as run_server
from marketplace.settings import BY_NAME, ConfigError, from_environ, parse
from marketplace.storage import StorageError
from marketplace.vetting.worker import run_worker, stop_processes

DEFAULT_ADMIN_EMAIL = "admin@gears.local"


class CLIError(click.ClickException):
    """A user-facing failure, shown as ``error: <message>``."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class MarketplaceGroup(click.Group):
    """Turns the registry's own exceptions into :class:`CLIError` in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MarketplaceError as exc:
            raise CLIError(exc.message) from None
        except StorageError as exc:
            raise CLIError(f"storage: {exc.message}") from None
        except OperationalError as exc:
            raise CLIError(f"cannot use the database: {exc.orig or exc}") from None


def _db_label(app: Flask) -> str:
    return make_url(app.config["DATABASE_URL"]).render_as_string(hide_password=True)


@click.group(cls=MarketplaceGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Operate a Gears registry: set it up, serve it, manage accounts and storage."""


# -- setup ----------------------------------------------------------------------------------


@main.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create or migrate the database, prepare storage and make sure an admin exists.

    Safe to run again: it only does what is missing. The first admin comes from
    GEARS_ADMIN_EMAIL / GEARS_ADMIN_PASSWORD; without them, when no admin exists,
    admin@gears.local is created with a generated password printed once.
    """
    app = get_app(ctx)
    changes: list[str] = []
    before, head = db.current_revision(app), db.head_revision(app)
    if before != head:
        db.upgrade(app)
        what = "created" if before is None else f"migrated from {before}"
        changes.append(f"database {_db_label(app)}: {what} (revision {head})")
    store = get_blob_store(app)
    store.ensure()
    store.check()
    with db.session_scope(app) as session:
        admin_line = _ensure_admin(session)
    if admin_line:
        changes.append(admin_line)
    key_line = _ensure_signing_key(app)
    if key_line:
        changes.append(key_line)
    if not changes:
        click.echo(f"Everything is already initialized: database {_db_label(app)} at revision "
                   f"{head}, storage {store.description}, an admin exists, signing key "
                   f"{_signing_key_id(app)}.")
        return
    for line in changes:
        click.echo(line)
    click.echo(f"storage {store.description}: ready")


def _ensure_admin(session: Any) -> str | None:
    email = (from_environ("ADMIN_EMAIL") or "").strip()
    password = from_environ("ADMIN_PASSWORD") or None
    if email:
        user = service.get_user(session, email)
        if user is not None:
            if user.role is not Role.admin:
                raise CLIError(f"GEARS_ADMIN_EMAIL names {user.email}, who is a "
                               f"{user.role.value}, not an admin")
            return None
    elif session.scalar(select(User.id).where(User.role == Role.admin).limit(1)) is not None:
        return None
    email = email or DEFAULT_ADMIN_EMAIL
    shown = password is None
    password = password or demo.new_password()
    user = service.create_user(session, email, Role.admin, password, actor=SystemActor.cli)
    if shown:
        return (f"admin {user.email}: created with password {password}\n"
                "  (shown only this once: keep it somewhere safe)")
    return f"admin {user.email}: created with the password from GEARS_ADMIN_PASSWORD"


def _ensure_signing_key(app: Flask) -> str | None:
    kid, created = keyring(app).ensure()
    return f"signing key {kid}: created in {key_dir(app)}" if created else None


def _signing_key_id(app: Flask) -> str | None:
    return keyring(app).current_id()


@main.command("rotate-key")
@click.pass_context
def rotate_key(ctx: click.Context) -> None:
    """Make a new registry signing key the current one.

    New approvals are signed with the new key; the old public key stays
    published at /api/v1/keys so existing signatures keep verifying. The old
    private key is deleted.
    """
    new, old = keyring(get_app(ctx)).rotate()
    click.echo(f"signing key {new}: now current" + (f" (retired {old}; its public key is "
                                                     "still served)" if old else ""))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Worker processes [default: 2 per CPU, 2 to 8].")
@click.option("--threads", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Threads per worker.")
@click.option("--engine-port", default=8001, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the engine node started on 127.0.0.1 (0: any free port). Not "
                   "used when GEARS_ENGINE_URLS names nodes of its own.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, workers: int | None, threads: int,
          engine_port: int) -> None:
    """Serve Gears: the web server (gunicorn), an engine node, the vetting worker(s) and
    the connector scheduler; Ctrl-C or SIGTERM stops them all."""
    app = get_app(ctx)
    problem = database_problem(app)
    if problem:
        raise CLIError(problem)
    vetters = _vetting_workers(app)
    urls = list(app.config["ENGINE_URLS"] or [])
    # This app only read the settings: its engine must not answer installation signals in
    # the web workers forked from this process.
    engine_shutdown(app)
    node: subprocess.Popen[bytes] | None = None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if urls:
            click.echo(f"Engine nodes: {', '.join(urls)} (GEARS_ENGINE_URLS; none started "
                       "here)", err=True)
        else:
            node_url, node = _start_engine_node(app, engine_port)
            urls = [node_url]
            click.echo(f"Engine node on {node_url}/engine/v1 (pid {node.pid})", err=True)
        procs.append(_start_child(["engine", "scheduler"], urls))
        click.echo(f"Connector scheduler started (pid {procs[-1].pid})", err=True)
        for _ in range(vetters):
            procs.append(_start_child(["vet", "worker"], urls))
        click.echo(f"{vetters} vetting worker process{'es' if vetters != 1 else ''}", err=True)
        web = create_app({"ENGINE_URLS": urls})
        click.echo(f"Serving Gears on http://{host}:{port}/ (database {_db_label(app)})",
                   err=True)
        run_server(web, host=host, port=port, workers=workers, threads=threads)
    finally:  # Ctrl-C or SIGTERM stops gunicorn; the other processes go with it, node last
        stop_processes(procs)
        if node is not None:
            stop_node_process(node)


#: How long ``marketplace serve`` waits for its engine node to answer.
ENGINE_START_SECONDS = 60.0


def _start_child(args: list[str], urls: list[str]) -> subprocess.Popen[bytes]:
    """``marketplace <args>`` with this process's environment and the engine nodes."""
    import os

    env = {**os.environ, "GEARS_ENGINE_URLS": ",".join(urls)}
    return subprocess.Popen([sys.executable, "-m", "marketplace", *args], env=env,
                            preexec_fn=_stop_with_parent)


def _stop_with_parent() -> None:
    """In a child of ``marketplace serve``: get SIGTERM when it dies, even of SIGKILL, so no
    engine node keeps its port and its gear workers after it (Linux; elsewhere nothing)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_engine_node(app: Flask, port: int) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``marketplace engine serve`` on 127.0.0.1 and wait until its status answers
    (at most :data:`ENGINE_START_SECONDS`)."""
    import os
    import time

    import requests

    port = port or _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "GEARS_ENGINE_URLS"}
    node = subprocess.Popen([sys.executable, "-m", "marketplace", "engine", "serve",
                             "--host", "127.0.0.1", "--port", str(port)], env=env,
                            preexec_fn=_stop_with_parent)
    headers = {"Authorization": f"Bearer {app.config['ENGINE_NODE_TOKEN']}"}
    deadline = time.monotonic() + ENGINE_START_SECONDS
    with requests.Session() as http:
        http.trust_env = False
        while True:
            if node.poll() is not None:
                raise CLIError(f"the engine node exited with status {node.returncode} before "
                               f"it answered (its output is above; is port {port} in use? "
                               "choose another with --engine-port)")
            try:
                answer = http.get(f"{url}/engine/v1/_node/status", headers=headers, timeout=2)
                if answer.status_code == 200:
                    return url, node
                problem = f"it answered {answer.status_code}"
            except requests.RequestException as exc:
                problem = str(exc)
            if time.monotonic() > deadline:
                stop_node_process(node)
                raise CLIError(f"the engine node at {url} did not answer within "
                               f"{ENGINE_START_SECONDS:g} seconds ({problem})")
            time.sleep(0.2)


def stop_node_process(node: subprocess.Popen[bytes], grace: float = 60.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds: the node stops its gear workers,
    control groups and mounts on the way out (what a SIGKILL leaves, the next start
    sweeps)."""
    if node.poll() is None:
        node.terminate()
        try:
            node.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()


def _vetting_workers(app: Flask) -> int:
    """``VETTING_WORKERS`` (parsed and bounded by the settings table when it came from
    the environment; checked again here when it came from the config file)."""
    try:
        return int(parse(BY_NAME["VETTING_WORKERS"], str(app.config["VETTING_WORKERS"])))
    except ConfigError as exc:
        raise CLIError(exc.message) from None


@main.group("db")
def db_group() -> None:
    """Database schema commands."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_context
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Apply the schema migrations."""
    app = get_app(ctx)
    before = db.current_revision(app)
    db.upgrade(app, revision)
    after = db.current_revision(app)
    if before == after:
        click.echo(f"database {_db_label(app)} already at revision {after}")
    else:
        click.echo(f"database {_db_label(app)}: {before or 'empty'} -> {after}")


@db_group.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Show the database's schema revision and the newest one available."""
    app = get_app(ctx)
    click.echo(f"current: {db.current_revision(app) or 'none'}\nhead: {db.head_revision(app)}")


@main.group("vet")
def vet_group() -> None:
    """Automated vetting of uploaded versions."""


@vet_group.command("worker")
@click.option("--once", is_flag=True, help="Process the queued jobs, then exit.")
@click.option("--poll", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between looks at an empty queue.")
@click.pass_context
def vet_worker(ctx: click.Context, once: bool, poll: float) -> None:
    """Run vetting jobs (any number of workers may run side by side)."""
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # SIGTERM unwinds like Ctrl-C, so a running job's process group is killed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        done = run_worker(get_app(ctx), once=once, poll=poll)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        return
    click.echo(f"vetted {done} version{'s' if done != 1 else ''}")


main.add_command(engine_group)


# -- accounts -------------------------------------------------------------------------------


@main.command("create-user")
@click.argument("email")
@click.option("--role", required=True, type=click.Choice(["admin", "developer", "business"]))
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input.")
@click.option("--display-name", default=None)
@click.pass_context
def create_user(ctx: click.Context, email: str, role: str, password_stdin: bool,
                display_name: str | None) -> None:
    """Create a user (without --password-stdin the user can only use API tokens)."""
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CLIError("--password-stdin given but standard input held no password")
    with session_scope(get_app(ctx)) as session:
        user = service.create_user(session, email, role, password, display_name=display_name,
                                   actor=SystemActor.cli)
        click.echo(f"created {user.role.value} {user.email}")


@main.command("create-publisher")
@click.argument("name")
@click.option("--owner", "owner_email", required=True, help="Email of the owning developer.")
@click.option("--display-name", default=None)
@click.pass_context
def create_publisher(ctx: click.Context, name: str, owner_email: str,
                     display_name: str | None) -> None:
    """Create a publisher namespace owned by an existing user."""
    with session_scope(get_app(ctx)) as session:
        service.create_publisher(session, name, owner_email, display_name=display_name,
                                 actor=SystemActor.cli)
        click.echo(f"created publisher {name} owned by {owner_email.strip().lower()}")


@main.command("create-workspace")
@click.argument("name")
@click.option("--member", "member_email", required=True, help="Email of the first member.")
@click.option("--display-name", default=None)
@click.pass_context
def create_workspace(ctx: click.Context, name: str, member_email: str,
                     display_name: str | None) -> None:
    """Create a workspace with an existing user as its owner."""
    with session_scope(get_app(ctx)) as session:
        service.create_workspace(session, name, member_email, display_name=display_name,
                                 actor=SystemActor.cli)
        click.echo(f"created workspace {name} with member {member_email.strip().lower()}")


@main.command("create-token")
@click.argument("email")
@click.option("--scope", "scopes", multiple=True, required=True,
              help="read, admin, publish:<publisher> or workspace:<workspace>; repeatable.")
@click.option("--expires-days", type=click.IntRange(min=1), default=None)
@click.option("--name", default="cli", show_default=True, help="A label to recognize it by.")
@click.pass_context
def create_token(ctx: click.Context, email: str, scopes: tuple[str, ...],
                 expires_days: int | None, name: str) -> None:
    """Create an API token; prints only the token, so it can be captured by scripts.

    The audit log records the operator CLI (``operator-cli``) as who created it, never
    the token's owner."""
    with session_scope(get_app(ctx)) as session:
        user = service.require_user(session, email)
        plaintext, _ = tokens.create_token(session, user, scopes, name=name,
                                           expires_days=expires_days, actor=SystemActor.cli)
    click.echo(plaintext)


# -- housekeeping ---------------------------------------------------------------------------


@main.command()
@click.option("--grace-hours", type=click.FloatRange(min=0), default=24.0, show_default=True,
              help="Leave blobs written more recently than this alone.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.pass_context
def gc(ctx: click.Context, grace_hours: float, dry_run: bool) -> None:
    """Delete stored blobs that no gear version references."""
    app = get_app(ctx)
    with session_scope(app) as session:
        removed = collect_garbage(session, get_blob_store(app),
                                  grace=timedelta(hours=grace_hours), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for blob in removed:
        click.echo(f"{verb} {blob.sha256} ({blob.size} bytes, written "
                   f"{blob.modified.isoformat(timespec='seconds')})")
    total = sum(b.size for b in removed)
    click.echo(f"{verb} {len(removed)} unreferenced blob{'s' if len(removed) != 1 else ''} "
               f"({total} bytes)")


@main.command("seed-demo")
@click.pass_context
def seed_demo(ctx: click.Context) -> None:
    """Seed the demo: accounts, the example gears published and approved, a workspace
    with gears installed, a catalog, segments, campaigns and sample events."""
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        click.echo(line)

    demo.seed_demo(get_app(ctx), say)
    if not lines:
        click.echo("demo data already present")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
