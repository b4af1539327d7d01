"""The generated references in docs/ are current, and the README keeps its promises."""

from __future__ import annotations

import pytest

from gears_sdk import hookspecs
from marketplace.docgen import render_all


@pytest.mark.parametrize("rel, text", sorted(render_all().items()))
def test_generated_reference_is_current(repo_root, rel, text):
    committed = (repo_root / rel).read_text(encoding="utf-8")
    assert committed == text, f"{rel} is stale: run `python -m marketplace.docgen`"


def test_every_hook_is_in_the_reference_with_its_signature(repo_root):
    reference = (repo_root / "docs/hooks.md").read_text(encoding="utf-8")
    for name in hookspecs.ALL_HOOKS:
        func = getattr(hookspecs, name)
        assert f"## `{name}`" in reference
        assert func.__doc__ and func.__doc__.strip().splitlines()[0] in reference


def test_readme_quickstart_is_the_two_commands(repo_root):
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
