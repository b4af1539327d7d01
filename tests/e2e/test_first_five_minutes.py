"""The README's "first five minutes", executed against a real server seeded like `make run`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap

import pytest
import requests

pytestmark = pytest.mark.slow

STEP = re.compile(r"^( *)```sh five-minutes\n(.*?)^\1```", re.S | re.M)


def readme_steps(text: str) -> list[str]:
    return [textwrap.dedent(body) for _, body in STEP.findall(text)]


def test_first_five_minutes(repo_root, live_registry):
    reg = live_registry()
    seeded = reg.marketplace("seed-demo").stdout
    token = re.search(r"workspace token for biz@gears\.local \(workspace:demo\): (\S+)",
                      seeded).group(1)
    url = reg.start()

    # Step 2: the catalog lists the example gears, approved.
    listing = requests.get(f"{url}/api/v1/gears?per_page=100", timeout=10).json()
    assert listing["total"] == len(list((repo_root / "example_gears").glob("*/gear.json")))
    assert requests.get(f"{url}/", timeout=10).status_code == 200

    # Step 3, through the API the install form posts to.
    auth = {"Authorization": f"Bearer {token}"}
    installed = requests.post(f"{url}/api/v1/workspaces/demo/installations", headers=auth,
                              json={"gear": "acme/consent-pii-filter", "config": {},
                                    "consent": True}, timeout=60)
    assert installed.status_code == 201, installed.text

    # Steps 4-6, the README's own commands.
    steps = readme_steps((repo_root / "README.md").read_text())
    assert len(steps) == 3
    env = {**os.environ, "TOKEN": token}
    out = []
    for step in steps:
        command = step.replace("http://127.0.0.1:8000", url)
        done = subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        out.append(json.loads(done.stdout))

    before, sent, after = out
    assert before["experience"] == "first-order-offer"
    assert "Bob" in before["content"]["html"]
    assert sent["accepted"] == 1 and not sent["gear_errors"]
    assert after["experience"] == "welcome-back" and after["fallback"] is False
    assert "Welcome back, Bob!" in after["content"]["html"]
