"""Registry commands (filled in below)."""

COMMANDS: list = []
