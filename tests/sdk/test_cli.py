"""The ``gears`` command line: local development commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from gears_sdk import __version__
from gears_sdk.cli import main
from gears_sdk.hookspecs import KINDS

GEARS = Path(sys.executable).parent / "gears"
REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def scaffold(tmp_path: Path, kind: str = "template", name: str = "acme/hello") -> Path:
    dest = tmp_path / f"{kind}-gear"
    code, _, err = run("new", name, "--kind", kind, "--dir", dest)
    assert code == 0, err
    return dest


@pytest.mark.slow
def test_acceptance_new_validate_build_and_scaffold_tests(tmp_path):
    gear_dir, out = tmp_path / "D", tmp_path / "O"

    def gears(*args):
        return subprocess.run([str(GEARS), *map(str, args)], capture_output=True, text=True,
                              cwd=tmp_path, timeout=60)

    created = gears("new", "acme/hello", "--kind", "template", "--dir", gear_dir)
    assert created.returncode == 0, created.stderr
    validated = gears("validate", gear_dir)
    assert validated.returncode == 0, validated.stderr
    assert validated.stdout.strip() == "ok: acme/hello 0.1.0 (template)"
    built = gears("build", gear_dir, "-o", out)
    assert built.returncode == 0, built.stderr
    path_line, sha_line = built.stdout.strip().splitlines()
    assert Path(path_line).name == "acme-hello-0.1.0.gear" and Path(path_line).is_file()
    assert sha_line.startswith("sha256: ")

    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(gear_dir)], capture_output=True, text=True, cwd=tmp_path,
                           timeout=120)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout

    again = gears("build", gear_dir, "-o", tmp_path / "O2")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[1] == sha_line


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_scaffolds_validates_and_builds(tmp_path, kind):
    gear_dir = scaffold(tmp_path, kind, f"acme/my-{kind}")
    assert (gear_dir / f"my_{kind}" / "__init__.py").is_file()
    assert (gear_dir / "tests" / f"test_my_{kind}.py").is_file()
    assert run("validate", gear_dir)[:2] == (0, f"ok: acme/my-{kind} 0.1.0 ({kind})\n")
    code, out, err = run("build", gear_dir, "-o", tmp_path / "out")
    assert code == 0, err
    assert f"acme-my-{kind}-0.1.0.gear" in out


@pytest.mark.parametrize("kind", ["connector", "extension"])
def test_scaffold_tests_pass(tmp_path, kind):
    gear_dir = scaffold(tmp_path, kind)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(gear_dir)], capture_output=True, text=True, cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_new_refuses_a_non_empty_dir_and_bad_names(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    code, _, err = run("new", "acme/x", "--kind", "template", "--dir", tmp_path / "x")
    assert code == 1 and "not empty" in err and "Traceback" not in err
    code, _, err = run("new", "Acme_X", "--kind", "template", "--dir", tmp_path / "y")
    assert code == 1
    assert "error: 'Acme_X' is not a valid gear name" in err and "publisher/gear" in err


def test_validate_reports_every_manifest_problem_with_its_path(tmp_path):
    gear_dir = scaffold(tmp_path)
    doc = json.loads((gear_dir / "gear.json").read_text())
    doc["version"] = "1.0"
    doc["kind"] = "widget"
    doc["permissions"]["network"] = ["http://bad host"]
    (gear_dir / "gear.json").write_text(json.dumps(doc))
    code, out, err = run("validate", gear_dir)
    assert code == 1 and out == ""
    assert err.startswith("error: ")
    assert "3 problems" in err
    for path in ("$.version:", "$.kind:", "$.permissions.network[0]:"):
        assert path in err
    assert "Traceback" not in err


def test_validate_reports_hook_mismatches_and_import_errors(tmp_path):
    gear_dir = scaffold(tmp_path)
    doc = json.loads((gear_dir / "gear.json").read_text())
    doc["hooks"] = ["gear_render", "gear_install"]
    (gear_dir / "gear.json").write_text(json.dumps(doc))
    code, _, err = run("validate", gear_dir)
    assert code == 1 and "gear_install is declared in gear.json but not implemented" in err
    (gear_dir / "hello" / "__init__.py").write_text("import not_a_module_anywhere\n")
    code, _, err = run("validate", gear_dir)
    assert code == 1 and "ModuleNotFoundError" in err and "Traceback" not in err


def test_validate_needs_a_gear_dir_and_readme(tmp_path):
    code, _, err = run("validate", tmp_path)
    assert code == 1 and "has no gear.json" in err
    gear_dir = scaffold(tmp_path)
    (gear_dir / "README.md").unlink()
    code, _, err = run("validate", gear_dir)
    assert code == 1 and "README.md" in err


def test_usage_errors_exit_2():
    assert run("new", "acme/x")[0] == 2
    assert run("new", "acme/x", "--kind", "plugin")[0] == 2
    assert run("no-such-command")[0] == 2
    assert run("inspect", "/nonexistent.gear")[0] == 2


def test_help_and_version():
    code, out, _ = run("--version")
    assert code == 0 and __version__ in out
    for command in main.commands:
        code, out, _ = run(command, "--help")
        assert code == 0 and "Usage:" in out, command


def test_inspect_text_and_json(tmp_path):
    gear_dir = scaffold(tmp_path, "connector")
    _, out, _ = run("build", gear_dir, "-o", tmp_path / "out")
    path, sha = out.splitlines()[0], out.splitlines()[1].split()[1]
    code, text, err = run("inspect", path)
    assert code == 0, err
    assert "acme/hello 0.1.0 (connector)" in text
    assert "api.example.com" in text and "gear_check" in text and f"sha256: {sha}" in text
    code, raw, _ = run("inspect", path, "--json")
    summary = json.loads(raw)
    assert summary["sha256"] == sha and summary["kind"] == "connector"
    assert summary["permissions"]["network"] == ["api.example.com"]
    names = [f["name"] for f in summary["files"]]
    assert "gear.json" in names and "hello/__init__.py" in names
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in summary["files"])


def test_inspect_refuses_a_file_that_is_not_a_gear(tmp_path):
    bogus = tmp_path / "bogus.gear"
    bogus.write_bytes(b"definitely not a zip")
    code, _, err = run("inspect", bogus)
    assert code == 1 and err.startswith("error: ") and "Traceback" not in err


@pytest.mark.parametrize("example", ["hero-banner", "rfm-score"])
def test_example_gears_validate_and_build(tmp_path, example):
    gear_dir = REPO / "example_gears" / example
    assert run("validate", gear_dir)[0] == 0
    code, out, err = run("build", gear_dir, "-o", tmp_path)
    assert code == 0, err
    assert out.splitlines()[0].endswith(f"acme-{example}-1.0.0.gear")
