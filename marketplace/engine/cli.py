"""``marketplace engine …``: the engine's operator commands.

* ``engine serve``: an engine node, the engine in a process of its own;
* ``engine scheduler``: claims due connector syncs and has a node run them;
* ``engine worker``: runs due syncs in its own process (an embedded engine), for
  a deployment without engine nodes.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import click

from marketplace.cli_context import database_problem, get_app
from marketplace.engine import get_engine
from marketplace.engine.node import claim_data_root, create_node_app, start_node, stop_node
from marketplace.engine.scheduler import node_runner, worker_loop
from marketplace.engine_service import NodePool
from marketplace.errors import MarketplaceError
from marketplace.server import serve as run_server

DEFAULT_NODE_PORT = 8001
DEFAULT_NODE_THREADS = 8


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


@click.group("engine")
def engine_group() -> None:
    """The personalization engine: nodes, and scheduled connector syncs."""


@engine_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_NODE_PORT, show_default=True,
              type=click.IntRange(1, 65535))
@click.option("--threads", type=click.IntRange(1, 64), default=DEFAULT_NODE_THREADS,
              show_default=True, help="Threads serving engine calls.")
def engine_serve(host: str, port: int, threads: int) -> None:
    """Serve an engine node: /engine/v1 and the node endpoints, in ONE process.

    One process holds one runtime, so each installation has at most one sandboxed
    worker on this node. The node polls the kill list and drains the lifecycle
    outbox; Ctrl-C or SIGTERM stops it with every worker, control group and
    data-dir mount it started. Point web servers at it with GEARS_ENGINE_URLS.
    """
    app = create_node_app()
    problem = database_problem(app)
    if problem:
        raise MarketplaceError(500, "database_not_ready", problem)
    held = claim_data_root(app)  # noqa: F841 (held open, and so locked, until the node exits)
    _logging()
    click.echo(f"Engine node on http://{host}:{port}/engine/v1 (one process, {threads} "
               "threads)", err=True)
    run_server(app, host=host, port=port, workers=1, threads=threads,
               proc_name="gears-engine", worker_start=start_node, worker_stop=stop_node)


@engine_group.command("scheduler")
@click.option("--once", is_flag=True, help="Have the due syncs run, then exit.")
@click.option("--poll-seconds", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds between looks for due syncs.")
@click.pass_context
def engine_scheduler(ctx: click.Context, once: bool, poll_seconds: float) -> None:
    """Claim due connector syncs and have an engine node (GEARS_ENGINE_URLS) run each.

    Runs no gear itself. Several schedulers may share one database: each due sync
    is claimed by exactly one.
    """
    app = get_app(ctx)
    urls = app.config["ENGINE_URLS"] or []
    if not urls:
        raise MarketplaceError(500, "no_engine_nodes", "the scheduler asks engine nodes to run "
                               "syncs: set GEARS_ENGINE_URLS (or run `marketplace engine "
                               "worker`, which runs them itself)")
    problem = database_problem(app)
    if problem:
        raise MarketplaceError(500, "database_not_ready", problem)
    _logging()
    pool = NodePool(urls, float(app.config["ENGINE_TIMEOUT_SECONDS"]),
                    app.config["ENGINE_NODE_TOKEN"])
    stop = threading.Event()

    def stopped(*_: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, stopped)
    worker_loop(app, node_runner(pool), once=once, poll_seconds=poll_seconds, stop=stop)
    if once:
        click.echo("due syncs done")


@engine_group.command("worker")
@click.option("--once", is_flag=True, help="Run the syncs that are due, then exit.")
@click.option("--poll-seconds", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds between looks for due syncs.")
@click.pass_context
def engine_worker(ctx: click.Context, once: bool, poll_seconds: float) -> None:
    """Run scheduled connector syncs in this process (no engine node needed).

    For a deployment without engine nodes; with nodes, run `marketplace engine
    scheduler` instead. Several workers may share one database.
    """
    _logging()
    app = get_app(ctx)
    try:
        worker_loop(app, get_engine(app), once=once, poll_seconds=poll_seconds)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        pass
    finally:
        if once:
            click.echo("due syncs done")
        get_engine(app).shutdown()  # its workers, control groups and mounts
