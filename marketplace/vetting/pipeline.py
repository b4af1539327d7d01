"""Run every check on one archive; a check that fails becomes a ``scanner_error`` finding.

A check raising must never look like a clean result: the error is recorded
as a ``high`` finding naming the step, the other checks still run (so the
reviewer sees as much as possible), and auto-approval is impossible because
a finding above ``info`` exists.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from marketplace.vetting.checks import CHECKS, Check
from marketplace.vetting.context import VetContext
from marketplace.vetting.findings import Finding, finding

log = logging.getLogger(__name__)


def run_checks(ctx: VetContext, checks: Sequence[tuple[str, Check]] = CHECKS
               ) -> list[dict[str, Any]]:
    """Findings of every check, as dicts, in pipeline order."""
    out: list[dict[str, Any]] = []
    for name, check in checks:
        try:
            found: list[Finding] = list(check(ctx))
        except Exception as exc:  # any failure of a check is a finding
            log.exception("vetting check %s failed on %s", name, ctx.archive)
            found = [finding("scanner_error", f"the {name} check failed: "
                             f"{type(exc).__name__}: {exc}"[:1000])]
        for f in found:
            out.append({**f.to_dict(), "check": name})
    return out
