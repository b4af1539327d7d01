"""docs/tutorial.md is executed as written: its shell blocks run in order and its file
blocks are written, against a real registry on loopback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def tutorial_steps(text: str) -> list[tuple[str, str, str]]:
    """``(kind, target, body)`` for every executable block: ``sh`` or a file."""
    steps = []
    for lang, info, body in BLOCK.findall(text):
        target = re.search(r"file=(\S+)", info)
        if target:
            steps.append(("file", target.group(1), body))
        elif lang == "sh":
            steps.append(("sh", "", body))
    return steps


def test_tutorial_runs_as_written(repo_root, live_registry, tmp_path):
    reg = live_registry()
    reg.marketplace("create-user", "dev@acme.test", "--role", "developer")
    reg.marketplace("create-publisher", "acme", "--owner", "dev@acme.test")
    token = reg.token("dev@acme.test", "publish:acme")
    url = reg.start(workers=1)

    work = tmp_path / "tutorial"
    work.mkdir()
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEARS_")}
    env.update(PATH=f"{bin_dir}:{env.get('PATH', '')}", GEARS_REGISTRY_URL=url,
               GEARS_PUBLISH_TOKEN=token, GEARS_CLI_CONFIG=str(tmp_path / "login.json"),
               PYTHONDONTWRITEBYTECODE="1")

    steps = tutorial_steps((repo_root / "docs/tutorial.md").read_text())
    assert sum(kind == "sh" for kind, _, _ in steps) >= 5
    outputs = []
    for kind, target, body in steps:
        if kind == "file":
            (work / target).write_text(body)
            continue
        for line in body.strip().splitlines():
            done = subprocess.run(line, shell=True, cwd=work, env=env, capture_output=True,
                                  text=True, timeout=180, stdin=subprocess.DEVNULL)
            assert done.returncode == 0, f"`{line}` failed:\n{done.stdout}\n{done.stderr}"
            outputs.append((line, done.stdout))

    status = dict(outputs)["gears status acme/greeter 0.2.0"]
    assert "pending" in status
    tests_run = [out for line, out in outputs if line == "pytest -q greeter"]
    assert "3 passed" in tests_run[-1]
