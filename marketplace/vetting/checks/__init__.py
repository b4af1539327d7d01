"""The vetting checks: each is a small function ``check(ctx) -> Iterable[Finding]``.

:data:`CHECKS` is the pipeline, in order. A check only reads the archive in
memory (the registry never imports or runs gear code in its own process);
the dynamic test is the one step that runs the gear, in the production
sandbox.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from marketplace.vetting.checks.dynamic import check_dynamic
from marketplace.vetting.checks.files import check_files
from marketplace.vetting.checks.hooks import check_hooks
from marketplace.vetting.checks.package import (
    check_archive,
    check_capabilities,
    check_config_schema,
    check_readme_license,
)
from marketplace.vetting.checks.secrets import check_secrets
from marketplace.vetting.checks.static import check_static
from marketplace.vetting.context import VetContext
from marketplace.vetting.findings import Finding

Check = Callable[[VetContext], Iterable[Finding]]

#: The vetting pipeline: (step name, check), cheapest first, the sandbox last.
CHECKS: tuple[tuple[str, Check], ...] = (
    ("archive", check_archive),
    ("hooks", check_hooks),
    ("static", check_static),
    ("files", check_files),
    ("secrets", check_secrets),
    ("package", check_readme_license),
    ("config_schema", check_config_schema),
    ("capabilities", check_capabilities),
    ("dynamic", check_dynamic),
)

__all__ = ["CHECKS", "Check"]
