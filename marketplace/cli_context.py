"""The app an operator command works on, shared by ``marketplace`` and its subcommand groups.

Its own module so a subcommand group (``marketplace engine …``) can reach it
without importing the top-level command, which imports the group.
"""

from __future__ import annotations

import click
from flask import Flask

from marketplace.app import create_app


def get_app(ctx: click.Context) -> Flask:
    """The app whose settings the command uses: the one passed as ``obj`` (tests), else a
    new one built from the environment like the server's."""
    root = ctx.find_root()
    if not isinstance(root.obj, Flask):
        root.obj = create_app()
    return root.obj
