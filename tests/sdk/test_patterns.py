"""Every regular expression applied to uploaded or sent text runs in linear time (RE2)."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest

from gears_sdk.manifest import validate_manifest
from gears_sdk.patterns import LinearValidator, PatternError, is_linear
from gears_sdk.patterns import compile as linear
from marketplace.vetting.checks import secrets
from marketplace.workspaces import validate_config

pytestmark = pytest.mark.timeout(120)

CHECKS_DIR = Path(secrets.__file__).parent
ADVERSARIAL = "".join(random.Random(1).choices("abcdefghijklmnopqrstuvwxyz0123456789_.-",
                                               k=1_000_000))


def test_the_secrets_check_uses_only_linear_patterns():
    assert is_linear(secrets.GENERIC) and is_linear(secrets.PLACEHOLDER)
    assert all(is_linear(pattern) for _, pattern, _ in secrets.PATTERNS)


def test_a_one_megabyte_adversarial_line_is_scanned():
    # Quadratic under a backtracking engine (16,000 characters took 7.6 s).
    assert secrets.scan_text(ADVERSARIAL + "\n" + ADVERSARIAL) == []


def test_secrets_are_still_found():
    key = 'aws = "AKIAABCDEFGHIJKLMNOP"\nmy_api_key = "Zq8Lk2Vw9Pt4Rx7Nb3Ms"\n'
    assert [(code, line) for code, line, _ in secrets.scan_text(key)] == [
        ("secret_aws_key", 1), ("secret_generic", 2)]


def test_no_vetting_check_imports_the_backtracking_engine():
    for path in CHECKS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            assert "re" not in names, f"{path.name} imports re; use gears_sdk.patterns"


def test_a_config_schema_pattern_runs_in_linear_time():
    # (a+)+$ against "aaaa…!" is exponential for a backtracking engine.
    schema = {"type": "object", "properties": {"code": {"type": "string",
                                                        "pattern": "^(a+)+$"}}}
    _, _, problems = validate_config({"config_schema": schema}, {"code": "a" * 40 + "!"})
    assert [p["path"] for p in problems] == ["$.code"]
    _, _, problems = validate_config({"config_schema": schema}, {"code": "aaa\n"})
    assert [p["path"] for p in problems] == ["$.code"]  # "$" only at the very end


def test_pattern_properties_and_additional_properties_use_re2():
    schema = {"type": "object", "patternProperties": {"^(x+)+$": {"type": "integer"}},
              "additionalProperties": False}
    validator = LinearValidator(schema)
    assert validator.is_valid({"xxxx": 1})
    assert not validator.is_valid({"x" * 40 + "!": 1})
    assert not validator.is_valid({"xxxx": "one"})


def test_patterns_re2_cannot_run_are_refused():
    with pytest.raises(PatternError):
        linear(r"(a)\1")
    assert not LinearValidator({"type": "string", "pattern": r"(?=a)a"}).is_valid("a")
    manifest = {"name": "acme/x", "version": "1.0.0", "kind": "template", "title": "X",
                "summary": "x", "entrypoint": "x", "hooks": ["gear_render"],
                "engine": ">=1.0.0", "config_schema": {
                    "type": "object", "properties": {"a": {"type": "string",
                                                           "pattern": r"(a)\1"}}}}
    paths = [p.path for p in validate_manifest(manifest)]
    assert "$.config_schema.properties.a.pattern" in paths


def test_names_with_a_trailing_newline_are_refused():
    from marketplace.accounts.validation import NAME_RE as ACCOUNT_NAME
    from marketplace.engine.validation import NAME_RE as ENGINE_NAME

    for pattern in (ACCOUNT_NAME, ENGINE_NAME):
        assert pattern.fullmatch("buyers") and not pattern.fullmatch("buyers\n")
        assert is_linear(pattern)
