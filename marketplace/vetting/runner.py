"""Each vetting job runs in a child process of its own, within a time budget.

The checks read hostile archives: a pathological file may cost any amount of
CPU or memory in a parser or a check nobody foresaw. So the worker never runs
them itself: it starts ``python -m marketplace.vetting.runner`` in a new
session (its own process group, which the gear's sandbox workers join), hands
it the archive on stdin and reads the findings from stdout. The job has
:data:`DEFAULT_BUDGET` seconds of wall-clock time (``GEARS_VETTING_JOB_SECONDS``);
the kernel also caps its CPU time (``RLIMIT_CPU``). When either runs out, the
whole group is killed and the job ends as ``scanner_error`` — fail closed, the
version stays pending, and it is not retried, since the same bytes would only
exhaust the same budget again.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from dataclasses import asdict
from typing import Any

from gears_sdk.archive import read_archive
from marketplace.vetting.context import SandboxOptions, VetContext

#: Wall-clock seconds one job may take (the dynamic load test included).
DEFAULT_BUDGET = 120.0
#: Largest findings document read back from a job (bytes).
MAX_OUTPUT = 8 * 1024 * 1024


class JobFailed(Exception):
    """The job's process ran out of budget or died; the content is to blame, not the worker."""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_job(data: bytes, *, previous_manifest: dict[str, Any] | None,
            previous_version: str | None, sandbox: SandboxOptions,
            budget: float = DEFAULT_BUDGET) -> list[dict[str, Any]]:
    """Findings for the archive ``data``, computed in a child process within ``budget``
    seconds; :class:`JobFailed` when it overruns or dies."""
    header = json.dumps({"previous_manifest": previous_manifest,
                         "previous_version": previous_version,
                         "sandbox": asdict(sandbox), "budget": budget}).encode()
    proc = subprocess.Popen([sys.executable, "-m", "marketplace.vetting.runner"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(header + b"\n" + data, timeout=budget)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise JobFailed(f"vetting took longer than its budget of {budget:g} s and was "
                        "stopped; an admin must review this version by hand") from None
    finally:  # done, interrupted (Ctrl-C) or failed: never leave the job's processes behind
        _kill_group(proc)
    if proc.returncode != 0 or len(out) > MAX_OUTPUT:
        why = ("it ran out of CPU time" if proc.returncode == -signal.SIGXCPU
               else f"it exited with status {proc.returncode}")
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise JobFailed(f"the vetting process failed ({why}) {tail[0][:300]}".strip())
    findings: list[dict[str, Any]] = json.loads(out)
    return findings


def _child() -> None:
    """Read the header line and the archive from stdin; print the findings as JSON."""
    # the checks (and the runtime they start) load in the child only, never in the
    # web or queue process that imports this module to spawn it
    from marketplace.vetting.pipeline import run_checks

    raw = sys.stdin.buffer.read()
    header_line, _, data = raw.partition(b"\n")
    header = json.loads(header_line)
    # The soft limit only: the sandbox's workers set their own, lower CPU limits.
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    cpu = int(float(header["budget"])) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu if hard == resource.RLIM_INFINITY
                                             else min(cpu, hard), hard))
    ctx = VetContext(archive=read_archive(data), previous_manifest=header["previous_manifest"],
                     previous_version=header["previous_version"],
                     sandbox=SandboxOptions(**header["sandbox"]))
    findings = run_checks(ctx)
    sys.stdout.write(json.dumps(findings))
    sys.stdout.flush()


if __name__ == "__main__":
    _child()
