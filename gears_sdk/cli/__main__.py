"""``python -m gears_sdk.cli`` runs the ``gears`` command."""

from gears_sdk.cli import main

main()
