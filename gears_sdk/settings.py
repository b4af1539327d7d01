"""Where ``gears login`` keeps the registry URL and token, and the ``gears``
command's environment variables (:data:`VARIABLES`; nothing else in the SDK
reads a ``GEARS_*`` variable).

The file is ``<user config dir>/gears/config.json`` (``platformdirs``), created
with mode 0600 because it holds a credential. ``GEARS_REGISTRY`` and
``GEARS_TOKEN`` override it, so CI can publish without ever writing a token to
disk; ``GEARS_TIMEOUT`` is the seconds a registry request may take (default 60).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from gears_sdk.errors import GearsError

#: The ``gears`` command's environment variables.
VARIABLES = ("GEARS_REGISTRY", "GEARS_TOKEN", "GEARS_CLI_CONFIG", "GEARS_TIMEOUT")
#: Seconds a registry request may take unless ``GEARS_TIMEOUT`` says otherwise.
DEFAULT_TIMEOUT = 60.0


def config_path() -> Path:
    """The login file's path (``GEARS_CLI_CONFIG`` points elsewhere, e.g. in tests)."""
    override = os.environ.get("GEARS_CLI_CONFIG")
    if override:
        return Path(override)
    return Path(platformdirs.user_config_dir("gears")) / "config.json"


@dataclass(frozen=True)
class Settings:
    """The registry to talk to and the token to present (either may be unset)."""

    registry: str | None = None
    token: str | None = None
    timeout: float = DEFAULT_TIMEOUT


def _read_file(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise GearsError(f"cannot read {path}: {exc}", code="bad_config",
                         hint="delete it and run 'gears login' again") from None
    return data if isinstance(data, dict) else {}


def env_token() -> str | None:
    """``GEARS_TOKEN``, or ``None`` when it is unset or empty."""
    return os.environ.get("GEARS_TOKEN") or None


def _timeout() -> float:
    raw = os.environ.get("GEARS_TIMEOUT")
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise GearsError(f"GEARS_TIMEOUT={raw!r} is not a number of seconds above 0",
                         code="bad_config", hint="e.g. GEARS_TIMEOUT=60")
    return value


def load_settings() -> Settings:
    """The stored login, with ``GEARS_REGISTRY`` / ``GEARS_TOKEN`` taking precedence, and
    the request timeout (``GEARS_TIMEOUT``)."""
    stored = _read_file(config_path())
    registry = os.environ.get("GEARS_REGISTRY") or stored.get("registry")
    token = env_token() or stored.get("token")
    return Settings(registry=registry.rstrip("/") if registry else None, token=token or None,
                    timeout=_timeout())


def save_login(registry: str, token: str) -> Path:
    """Store the login, readable by the current user only; return the file's path."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = json.dumps({"registry": registry.rstrip("/"), "token": token}, indent=2) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)  # an older file may have been created looser
        fh.write(data)
    return path
