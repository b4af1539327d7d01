"""The ``gears`` command line: scaffold, validate, build, inspect and publish gears.

Each command is a thin wrapper over a plain function of the SDK. Errors the
SDK raises on purpose (:class:`~gears_sdk.errors.GearsError`) are caught once,
here, and printed as ``error: <message>`` without a traceback (exit code 1);
usage mistakes are click's (exit code 2).
"""

from __future__ import annotations

from typing import Any

import click

from gears_sdk import __version__
from gears_sdk.cli import develop, registry
from gears_sdk.errors import GearsError


def print_error(exc: GearsError) -> None:
    """Print ``error: <message>``, the problems' details and the hint to stderr."""
    click.echo(f"error: {exc.message}", err=True)
    for detail in getattr(exc, "details", None) or ():
        path, message = detail.get("path"), detail.get("message", "")
        click.echo(f"  - {path}: {message}" if path else f"  - {message}", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)


class GearsGroup(click.Group):
    """A click group that turns :class:`GearsError` into a clean exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GearsError as exc:
            print_error(exc)
            ctx.exit(1)


@click.group(cls=GearsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gears")
def main() -> None:
    """Develop and publish gears for the Gears marketplace."""


def _register() -> None:
    for command in (*develop.COMMANDS, *registry.COMMANDS):
        main.add_command(command)


_register()

__all__ = ["main", "print_error"]
