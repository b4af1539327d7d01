"""The peers, installed where the benchmark keeps them, never into the project's environment.

* ``bench/.peers-venv``: a virtualenv made with ``python -m venv`` holding
  pypiserver, devpi-server and gunicorn (the same gunicorn version Gears runs
  on, so pypiserver is served the same way);
* ``bench/.peers-node``: verdaccio installed with ``npm install``.

Both are kept between runs; a marker file records what was installed so a
rerun only checks it. When something cannot be installed the peer is
reported "not installed" with the reason instead of failing the run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from bench.util import BENCH_DIR, BenchError, progress, run

PEERS_VENV = BENCH_DIR / ".peers-venv"
PEERS_NODE = BENCH_DIR / ".peers-node"
PYPISERVER = "pypiserver==2.4.2"
DEVPI_SERVER = "devpi-server==6.20.3"
PASSLIB = "passlib==1.7.4"
#: With watchdog installed pypiserver caches its package directory listing (its
#: "cached-dir" backend) instead of scanning the directory on every request, as
#: any deployment holding more than a few packages would run it.
WATCHDOG = "watchdog"
#: verdaccio 6 needs Node.js 22; 5.x runs on the Node.js that Debian ships (>= 14).
VERDACCIO_FOR_NODE = {22: "6.10.4", 14: "5.33.0"}


def _gunicorn_requirement() -> str:
    try:
        return f"gunicorn=={metadata.version('gunicorn')}"
    except metadata.PackageNotFoundError:
        return "gunicorn"


def python_requirements() -> list[str]:
    return [PYPISERVER, DEVPI_SERVER, PASSLIB, WATCHDOG, _gunicorn_requirement()]


def venv_bin(name: str) -> Path:
    return PEERS_VENV / "bin" / name


def ensure_python_peers() -> str | None:
    """Create or reuse the peers' virtualenv; None when ready, else why it is not."""
    reqs = python_requirements()
    marker = PEERS_VENV / ".installed.json"
    if marker.exists() and json.loads(marker.read_text()) == reqs:
        return None
    progress(f"installing {', '.join(reqs)} into {PEERS_VENV}")
    try:
        if not venv_bin("python").exists():
            run([sys.executable, "-m", "venv", str(PEERS_VENV)], timeout=300)
        run([str(venv_bin("python")), "-m", "pip", "install", "--quiet",
             "--disable-pip-version-check", *reqs], timeout=600)
    except BenchError as exc:
        return f"pip could not install the peers: {str(exc).splitlines()[-1][:200]}"
    marker.write_text(json.dumps(reqs))
    return None


def python_peer_version(dist: str) -> str:
    """A package's version inside the peers' virtualenv."""
    try:
        return run([str(venv_bin("python")), "-c",
                    f"import importlib.metadata as m; print(m.version({dist!r}))"]).strip()
    except BenchError:
        return "unknown"


def node_major() -> int | None:
    node = shutil.which("node")
    if node is None:
        return None
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def verdaccio_bin() -> Path:
    return PEERS_NODE / "node_modules" / ".bin" / "verdaccio"


def ensure_verdaccio() -> tuple[str | None, str]:
    """Install verdaccio under ``bench/.peers-node``: (why not, or None; version)."""
    major = node_major()
    npm = shutil.which("npm")
    if major is None or npm is None:
        return "Node.js/npm are not installed (make bench-deps installs them)", ""
    version = next((v for need, v in sorted(VERDACCIO_FOR_NODE.items(), reverse=True)
                    if major >= need), None)
    if version is None:
        return f"Node.js {major} is older than any verdaccio this benchmark knows", ""
    package = {"name": "gears-bench-peers", "private": True,
               "dependencies": {"verdaccio": version},
               # Some verdaccio releases ask for node-fetch by the "cjs" dist-tag,
               # which not every npm registry mirror carries; 2.x is that line.
               "overrides": {"node-fetch": "2.7.0"}}
    marker = PEERS_NODE / ".installed.json"
    if marker.exists() and json.loads(marker.read_text()) == package and verdaccio_bin().exists():
        return None, version
    progress(f"installing verdaccio {version} into {PEERS_NODE} with npm")
    PEERS_NODE.mkdir(parents=True, exist_ok=True)
    (PEERS_NODE / "package.json").write_text(json.dumps(package, indent=2))
    try:
        run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=PEERS_NODE,
            timeout=600)
    except BenchError as exc:
        return f"npm could not install verdaccio: {str(exc).splitlines()[-1][:200]}", version
    if not verdaccio_bin().exists():
        return "npm finished but verdaccio's command is missing", version
    marker.write_text(json.dumps(package))
    return None, version
