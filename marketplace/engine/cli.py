"""``marketplace engine …``: the engine's operator commands."""

from __future__ import annotations

import logging

import click

from marketplace.cli_context import get_app
from marketplace.engine import get_engine
from marketplace.engine.scheduler import worker_loop


@click.group("engine")
def engine_group() -> None:
    """The personalization engine: scheduled connector syncs."""


@engine_group.command("worker")
@click.option("--once", is_flag=True, help="Run the syncs that are due, then exit.")
@click.option("--poll-seconds", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds between looks for due syncs.")
@click.pass_context
def engine_worker(ctx: click.Context, once: bool, poll_seconds: float) -> None:
    """Run scheduled connector syncs (several workers may share one database)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app = get_app(ctx)
    try:
        worker_loop(app, get_engine(app), once=once, poll_seconds=poll_seconds)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        pass
    finally:
        if once:
            click.echo("due syncs done")
        get_engine(app).shutdown()  # its workers, control groups and mounts
