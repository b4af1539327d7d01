"""Hook conformance, statically: the declared hooks exist for the kind and are implemented.

The SDK's :func:`gears_sdk.hookspecs.check_hooks` does this by importing
the module, which the registry must never do with untrusted code. Here the
entrypoint module is parsed instead, and its top-level functions decorated
with ``@hookimpl`` (however it was imported: ``hookimpl``,
``gears_sdk.hookimpl``, ``@hookimpl(specname=…)``) are the implementations.
Names re-exported from the gear's own modules (``from .impl import
gear_render``) are followed one level, which is how gears split code.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterable

from gears_sdk import hookspecs
from gears_sdk.hookspecs import ALL_HOOKS, KIND_HOOKS, kind_problems
from marketplace.vetting.context import VetContext
from marketplace.vetting.findings import Finding, Severity, finding


def module_file(ctx: VetContext, module: str) -> str | None:
    """The archive member holding ``module`` (``a.b`` → ``a/b/__init__.py`` or ``a/b.py``;
    a package wins over a module of the same name, as in Python's import system)."""
    base = module.replace(".", "/")
    for candidate in (f"{base}/__init__.py", f"{base}.py"):
        if candidate in ctx.archive.names:
            return candidate
    return None


def spec_args(hook: str) -> set[str]:
    return set(inspect.signature(getattr(hookspecs, hook)).parameters)


def _is_hookimpl(decorator: ast.expr) -> tuple[bool, str | None]:
    """Whether ``decorator`` is ``hookimpl`` in any spelling, and its ``specname``."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = target.attr if isinstance(target, ast.Attribute) else (
        target.id if isinstance(target, ast.Name) else "")
    if name != "hookimpl":
        return False, None
    specname = None
    if isinstance(decorator, ast.Call):
        for kw in decorator.keywords:
            if kw.arg == "specname" and isinstance(kw.value, ast.Constant):
                specname = str(kw.value.value)
    return True, specname


def implementations(ctx: VetContext, module: str, depth: int = 0
                    ) -> dict[str, tuple[str, int, list[str]]]:
    """``{hook: (file, line, parameter names)}`` for the module's ``@hookimpl`` functions."""
    path = module_file(ctx, module)
    source = ctx.text(path) if path else None
    if path is None or source is None:
        return {}
    tree = ast.parse(source, filename=path)
    found: dict[str, tuple[str, int, list[str]]] = {}
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for dec in node.decorator_list:
                ok, specname = _is_hookimpl(dec)
                if ok:
                    args = [a.arg for a in node.args.posonlyargs + node.args.args
                            + node.args.kwonlyargs]
                    found[specname or node.name] = (path, node.lineno, args)
        elif isinstance(node, ast.ImportFrom) and node.level and depth < 2:
            parts = package.split(".") if package else []
            parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
            sub = ".".join(p for p in (*parts, node.module or "") if p)
            wanted = {a.name: a.asname or a.name for a in node.names}
            if not any(n in ALL_HOOKS for n in wanted.values()):
                continue
            for hook, where in implementations(ctx, sub, depth + 1).items():
                if hook in wanted:
                    found[wanted[hook]] = where
    return found


def check_hooks(ctx: VetContext) -> Iterable[Finding]:
    m = ctx.manifest
    entry = module_file(ctx, m.entrypoint)
    if entry is None:
        return [finding("entrypoint_missing", f"the entrypoint {m.entrypoint!r} is neither "
                        f"{m.entrypoint.replace('.', '/')}.py nor a package in the archive")]
    try:
        impls = implementations(ctx, m.entrypoint)
    except SyntaxError as exc:
        return [finding("syntax_error", f"the entrypoint does not parse: {exc.msg}",
                        file=exc.filename or entry, line=exc.lineno)]
    except (ValueError, RecursionError, MemoryError) as exc:
        return [finding("syntax_error", f"the entrypoint cannot be parsed "
                        f"({type(exc).__name__}): {exc}"[:300], file=entry)]
    out: list[Finding] = [finding("hook_not_for_kind", problem, file="gear.json")
                          for problem in kind_problems(m.kind, m.hooks)]
    allowed = KIND_HOOKS.get(m.kind, frozenset())
    for hook in sorted(set(m.hooks) - impls.keys()):
        out.append(finding("hook_not_implemented", f"{hook} is declared in gear.json but no "
                           f"@hookimpl function implements it in {entry}", file=entry))
    for hook, (file, line, args) in sorted(impls.items()):
        if hook not in m.hooks:
            sev: Severity = "medium" if hook in allowed else "high"
            out.append(finding("hook_undeclared", f"{hook} is implemented but not declared in "
                               "gear.json 'hooks'" + ("" if hook in ALL_HOOKS else
                                                      " (and is not a known hook)"),
                               severity=sev, file=file, line=line))
            continue
        extra = [a for a in args if a not in spec_args(hook)]
        if extra:
            out.append(finding("hook_bad_arguments", f"{hook} takes {', '.join(extra)}, which "
                               f"the hook spec does not pass (it passes "
                               f"{', '.join(sorted(spec_args(hook)))})", file=file, line=line))
    return out
