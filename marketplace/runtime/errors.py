"""The runtime's exceptions.

:class:`GearCallError` is the one base for everything a gear can do wrong
during a call; it always names the installation (and gear) to blame, so the
engine can attribute, count and report it without parsing messages.
:class:`SandboxError` is the operator's problem: the host cannot provide the
isolation that the configuration demands.
"""

from __future__ import annotations

from gears_sdk.errors import GearsError


class SandboxError(GearsError):
    """The host cannot sandbox gears at the required level (or at all)."""

    code = "sandbox_unavailable"


class GearCallError(GearsError):
    """A call into an installed gear failed; attributed to ``installation``.

    ``code`` says how: ``gear_error`` (the hook raised), ``timeout``,
    ``crashed``, ``protocol`` (the worker broke the protocol), ``too_large``,
    ``invalid_result``, ``patch_refused``, ``load_failed``, ``backoff``
    (restarting) or ``disabled``.
    """

    code = "gear_error"

    def __init__(self, message: str, *, installation: str = "", gear: str = "",
                 code: str | None = None, error_type: str | None = None):
        super().__init__(message, code=code)
        self.installation = installation
        self.gear = gear
        self.error_type = error_type

    def __str__(self) -> str:
        who = f"{self.gear} ({self.installation})" if self.gear else self.installation
        return f"{who}: {self.message}" if who else self.message


class GearTimeout(GearCallError):
    code = "timeout"


class GearCrashed(GearCallError):
    code = "crashed"


class GearProtocolError(GearCallError):
    code = "protocol"


class GearDisabled(GearCallError):
    code = "disabled"
