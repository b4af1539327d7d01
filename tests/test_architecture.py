"""The layers of docs/architecture.md, checked on every module's imports.

The check reads the source with ``ast`` rather than importing it, so it sees
imports inside functions too: an import a function hides is still a
dependency. Imports under ``if TYPE_CHECKING:`` are left out because they never
run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gears_sdk", "marketplace")

PAGES = ("marketplace.web", "marketplace.admin")
#: What reaches the engine only through its service interface (marketplace.engine_service).
ENGINE_CLIENTS = (*PAGES, "marketplace.registry", "marketplace.workspaces", "marketplace.demo",
                  "marketplace.engine_service", "marketplace.engine_proxy")

# (layer, what it must not import). docs/architecture.md "Layers" says the same.
FORBIDDEN: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gears_sdk", ("marketplace",)),
    (
        "marketplace.runtime",
        (
            "marketplace.engine",
            "marketplace.registry",
            "marketplace.vetting",
            "marketplace.workspaces",
            *PAGES,
        ),
    ),
    ("marketplace.engine", PAGES),
    ("marketplace.registry", PAGES),
    ("marketplace.accounts", PAGES),
    *((client, ("marketplace.engine",)) for client in ENGINE_CLIENTS),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    """Every module of the two packages, by dotted name."""
    return {
        _module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
    }


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """Every node below ``node`` except the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other
                yield from _runtime_nodes(other)
            continue
        yield child
        yield from _runtime_nodes(child)


def _absolute(name: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".") if is_package else name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(node: ast.Import | ast.ImportFrom, name: str, is_package: bool,
             modules: dict[str, Path]) -> Iterator[str]:
    """The modules one import statement imports."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = _absolute(name, is_package, node)
    for alias in node.names:
        full = f"{base}.{alias.name}"
        yield full if full in modules else base


def imports_in(
    source: str, name: str, is_package: bool, modules: dict[str, Path]
) -> Iterator[tuple[str, int]]:
    """(imported module, line) for each import that runs, at any depth."""
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target in _targets(node, name, is_package, modules):
                yield target, node.lineno


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    return imports_in(path.read_text(), name, path.name == "__init__.py", modules)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_layers_import_only_downwards() -> None:
    modules = all_modules()
    violations = [
        f"{name}:{line} imports {target}"
        for name, path in modules.items()
        for target, line in imports_of(name, path, modules)
        for layer, banned in FORBIDDEN
        if _within(name, layer) and any(_within(target, b) for b in banned)
    ]
    assert not violations, "layer violations:\n" + "\n".join(violations)


def test_the_bench_reaches_the_engine_through_its_service_only() -> None:
    modules = all_modules()
    violations = [
        f"bench/{path.name}:{line} imports {target}"
        for path in sorted((ROOT / "bench").glob("*.py"))
        for target, line in imports_in(path.read_text(), f"bench.{path.stem}",
                                       path.name == "__init__.py", modules)
        if _within(target, "marketplace.engine")
    ]
    assert not violations, "the bench imports engine internals:\n" + "\n".join(violations)


def test_the_check_sees_function_imports_and_skips_type_only_ones() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import a\n"
        "def f():\n    from ..web import views\n"
    )
    modules = {"marketplace.web.views": Path("x")}
    found = [t for t, _ in imports_in(source, "marketplace.engine.x", False, modules)]
    assert found == ["typing", "marketplace.web.views"]


def _defined_names(path: Path) -> Iterator[str]:
    """Module-level names, and every function or class at any depth."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            yield node.name
    for node in tree.body:
        if isinstance(node, ast.Assign):
            yield from (t.id for t in node.targets if isinstance(t, ast.Name))


def test_the_problem_shape_and_the_schema_sentences_are_defined_once() -> None:
    owners = {
        "Problem": {"gears_sdk.errors"},
        "ProblemDetail": {"gears_sdk.errors"},
        "problem": {"gears_sdk.errors"},
        "_problem": set(),
        "sentence": {"gears_sdk.schema_errors"},
        "_sentence": set(),
    }
    found: dict[str, set[str]] = {name: set() for name in owners}
    for name, path in all_modules().items():
        for defined in _defined_names(path):
            if defined in found:
                found[defined].add(name)
    assert found == owners


# Cycles not yet untangled; each entry is a debt, and the list only shrinks.
KNOWN_CYCLES: set[frozenset[str]] = set()


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports when it runs (type-only imports left out)."""
    modules = all_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        graph[name] = set()
        for target, _ in imports_of(name, path, modules):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_only_import_cycles_are_type_only() -> None:
    assert set(cycles(import_graph())) <= KNOWN_CYCLES


def function_imports_in(source: str, name: str, is_package: bool,
                        modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(project module, line) for each import inside a function (type-only ones left out)."""

    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    yield from walk(other, in_function)
                continue
            if in_function and isinstance(child, ast.Import | ast.ImportFrom):
                for target in _targets(child, name, is_package, modules):
                    yield target, child.lineno
            yield from walk(child, in_function or isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef))

    for target, line in walk(ast.parse(source), False):
        if target.split(".")[0] in PACKAGES:
            yield target, line


# An import inside a function hides a dependency; only these defer one on purpose
# (module -> what it imports there, each with its reason in a comment at the import).
ALLOWED_FUNCTION_IMPORTS: dict[str, set[str]] = {
    # `import marketplace.storage` must not build Flask and every blueprint
    "marketplace": {"marketplace.app"},
    # alembic's command line runs env.py as a script: the app is built only then
    "marketplace.migrations.env": {"marketplace"},
    # init_app: the blueprints import modules that import the package back
    "marketplace.accounts": {"marketplace.accounts.api"},
    "marketplace.registry": {"marketplace.openapi", "marketplace.registry.api",
                             "marketplace.registry.trust_api"},
    # vetting depends on the registry; publishing reaches up only to queue its job
    "marketplace.registry.publish": {"marketplace.vetting.jobs"},
    # the checks (and the runtime they start) load in the vetting child process only
    "marketplace.vetting.jobs": {"marketplace.vetting.pipeline"},
    "marketplace.vetting.runner": {"marketplace.vetting.pipeline"},
}


def test_function_level_imports_of_project_modules_are_deliberate() -> None:
    modules = all_modules()
    found = [
        f"{name}:{line} imports {target} inside a function"
        for name, path in modules.items()
        for target, line in function_imports_in(path.read_text(), name,
                                                path.name == "__init__.py", modules)
        if target not in ALLOWED_FUNCTION_IMPORTS.get(name, set())
    ]
    assert not found, "move these to the top of the module, or give the reason:\n" + \
        "\n".join(found)


def test_the_function_import_check_sees_nested_and_relative_imports() -> None:
    source = ("import os\nfrom typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n    from marketplace import db\n"
              "def f():\n    import json\n    if True:\n        from ..web import views\n"
              "class C:\n    def m(self):\n        import gears_sdk.values\n")
    modules = {"marketplace.web.views": Path("x")}
    found = list(function_imports_in(source, "marketplace.engine.x", False, modules))
    assert found == [("marketplace.web.views", 8), ("gears_sdk.values", 11)]


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [frozenset({"a", "b"})]
