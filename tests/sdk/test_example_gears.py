"""Every gear in example_gears/ is a complete, honest example.

Each one must validate and build reproducibly, ship a README and tests,
have a config schema whose defaults make a valid install form, and declare
exactly the network and secrets its code uses: no host without a call to
``ctx.http``, no secret it never reads.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator, FormatChecker

from gears_sdk.cli import main
from gears_sdk.manifest import load_manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "example_gears"
GEAR_DIRS = sorted(p for p in EXAMPLES.iterdir() if (p / "gear.json").is_file())


def run(*args: object) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def ctx_usage(gear_dir: Path, entrypoint: str) -> tuple[bool, set[str]]:
    """Whether the gear's package touches ``ctx.http``, and the names it passes to ``ctx.secrets.get``."""
    package = gear_dir / entrypoint.split(".")[0]
    files = sorted(package.rglob("*.py")) if package.is_dir() else [package.with_suffix(".py")]
    uses_http, secrets = False, set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if (isinstance(node, ast.Attribute) and node.attr == "http"
                    and isinstance(node.value, ast.Name) and node.value.id == "ctx"):
                uses_http = True
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "get" and isinstance(node.func.value, ast.Attribute)
                    and node.func.value.attr == "secrets" and node.args
                    and isinstance(node.args[0], ast.Constant)):
                secrets.add(node.args[0].value)
    return uses_http, secrets


def test_there_are_examples_of_every_kind():
    kinds = {load_manifest(d).kind for d in GEAR_DIRS}
    assert kinds == {"connector", "extension", "template"}
    assert len(GEAR_DIRS) >= 10


@pytest.mark.parametrize("gear_dir", GEAR_DIRS, ids=lambda p: p.name)
def test_validates_and_builds_reproducibly(tmp_path, gear_dir):
    code, out, err = run("validate", gear_dir)
    assert code == 0, err
    manifest = load_manifest(gear_dir)
    archives = []
    for name in ("a", "b"):
        code, out, err = run("build", gear_dir, "-o", tmp_path / name)
        assert code == 0, err
        archive = tmp_path / name / manifest.archive_name
        assert out.splitlines()[0].endswith(manifest.archive_name)
        archives.append(hashlib.sha256(archive.read_bytes()).hexdigest())
    assert archives[0] == archives[1]


@pytest.mark.parametrize("gear_dir", GEAR_DIRS, ids=lambda p: p.name)
def test_has_readme_tests_and_catalog_metadata(gear_dir):
    manifest = load_manifest(gear_dir)
    readme = (gear_dir / manifest.readme).read_text("utf-8")
    assert readme.startswith("# ") and "## Permissions" in readme
    assert "## Configuration" in readme or not manifest.config_schema.get("properties")
    assert sorted((gear_dir / "tests").glob("test_*.py")), f"{gear_dir.name} has no tests"
    assert manifest.version.major >= 1 and manifest.license == "MIT"
    assert manifest.categories and "limits" in manifest.raw


def test_test_module_names_are_unique_across_examples():
    # the tests/ directories are not packages, so pytest imports every test
    # module by its basename when the whole tree is collected
    names = [p.name for d in GEAR_DIRS for p in (d / "tests").glob("test_*.py")]
    assert len(names) == len(set(names)), sorted(names)


@pytest.mark.parametrize("gear_dir", GEAR_DIRS, ids=lambda p: p.name)
def test_config_schema_defaults_make_a_valid_config(gear_dir):
    manifest = load_manifest(gear_dir)
    schema = manifest.config_schema
    secret = set(manifest.secret_fields())
    config = {}
    for key, prop in (schema.get("properties") or {}).items():
        assert prop.get("title"), f"{key} has no title for the install form"
        if key in secret:
            assert "default" not in prop, f"the secret {key} must not have a default"
            config[key] = "placeholder-secret-value"
        else:
            assert "default" in prop, f"{key} has no default"
            config[key] = prop["default"]
    errors = list(Draft202012Validator(schema, format_checker=FormatChecker()).iter_errors(config))
    assert errors == [], [e.message for e in errors]


@pytest.mark.parametrize("gear_dir", GEAR_DIRS, ids=lambda p: p.name)
def test_declares_exactly_the_network_and_secrets_it_uses(gear_dir):
    manifest = load_manifest(gear_dir)
    uses_http, secrets_read = ctx_usage(gear_dir, manifest.entrypoint)
    network = manifest.permissions.network
    if uses_http:
        assert network, f"{gear_dir.name} calls ctx.http but declares no network permission"
    else:
        assert not network, f"{gear_dir.name} declares {network} but never calls ctx.http"
    assert secrets_read == set(manifest.permissions.secrets)
    assert secrets_read <= set(manifest.secret_fields())
