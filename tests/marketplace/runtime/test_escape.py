"""The escape suite: a hostile gear tries to break out, and every attempt is refused.

Runs the real launcher at every sandbox level the host reaches (``strict``
and ``standard``); a level the host cannot reach is skipped with the probe's
reason. After every attack the same runtime must still answer a benign call,
and the gear's write inside its own data dir must still work.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from marketplace.runtime import GearTimeout, Installation, Runtime
from tests.marketplace.runtime.hostile import HOSTILE_SOURCE

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]

SECRET = "hunter2-" + uuid.uuid4().hex
WORKER_ENV_KEYS = {"LANG", "MALLOC_ARENA_MAX", "PYTHONDONTWRITEBYTECODE", "PWD"}


@dataclass
class Hostile:
    runtime: Runtime
    inst: Installation
    level: str

    def attack(self, name: str, **event: Any) -> dict[str, Any]:
        patch = self.runtime.call(self.inst.id, "gear_on_event",
                                  event={"attack": name, "data": str(self.inst.data_dir),
                                         **event}, profile={})
        outcome: dict[str, Any] = patch.set["traits.outcome"]
        return outcome

    def assert_still_serving(self) -> None:
        assert self.attack("control") == {"ok": True, "detail": "mine"}


@pytest.fixture(params=["strict", "standard"])
def hostile(request, make_gear, installation, runtime_factory, monkeypatch) -> Hostile:
    monkeypatch.setenv("GEARS_TEST_ENGINE_SECRET", SECRET)
    rt = runtime_factory(level=request.param, failure_threshold=1000)
    gear = make_gear(HOSTILE_SOURCE, name="evil/hostile", write=("traits.outcome",),
                     timeout_ms=1500, memory_mb=64)
    inst = installation(gear, secrets={"token": SECRET})
    rt.start(inst)
    return Hostile(rt, inst, request.param)


def _refused(outcome: dict[str, Any], *errnos: str) -> None:
    assert outcome["ok"] is False, outcome
    if errnos:
        assert outcome.get("errno") in errnos, outcome


def test_control_write_in_own_data_dir_and_threads_work(hostile: Hostile) -> None:
    hostile.assert_still_serving()
    assert (hostile.inst.data_dir / "control.txt").read_text() == "mine"
    assert hostile.attack("thread") == {"ok": True, "detail": 1}


def test_host_passwd_is_not_readable(hostile: Hostile) -> None:
    outcome = hostile.attack("read_file", path="/etc/passwd")
    _refused(outcome, "ENOENT", "EACCES")
    assert "root:" not in str(outcome)
    hostile.assert_still_serving()


def test_another_installations_data_is_not_readable(hostile: Hostile, make_gear,
                                                    installation) -> None:
    other = installation(make_gear("@hookimpl\ndef gear_on_event(event):\n    return None\n"))
    hostile.runtime.start(other)
    secret_file = other.data_dir / "secret.txt"
    secret_file.write_text(SECRET)
    outcome = hostile.attack("read_file", path=str(secret_file))
    _refused(outcome, "ENOENT", "EACCES")
    assert SECRET not in str(outcome)
    hostile.assert_still_serving()


@pytest.mark.parametrize("pid", ["engine", "1"])
def test_process_environments_are_not_readable(hostile: Hostile, pid: str) -> None:
    target = str(os.getpid()) if pid == "engine" else pid
    outcome = hostile.attack("read_file", path=f"/proc/{target}/environ")
    _refused(outcome, "ENOENT", "EACCES")
    assert SECRET not in str(outcome)
    hostile.assert_still_serving()


def test_engine_environment_is_not_inherited(hostile: Hostile) -> None:
    outcome = hostile.attack("environ")
    assert set(outcome["detail"]) <= WORKER_ENV_KEYS
    assert SECRET not in str(outcome)


def test_tcp_to_loopback_is_blocked(hostile: Hostile) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.3)
        outcome = hostile.attack("tcp", port=listener.getsockname()[1])
        _refused(outcome, "EPERM")
        with pytest.raises(TimeoutError):
            listener.accept()
    hostile.assert_still_serving()


def test_udp_to_loopback_is_blocked(hostile: Hostile) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(0.3)
        outcome = hostile.attack("udp", port=listener.getsockname()[1])
        _refused(outcome, "EPERM")
        with pytest.raises(TimeoutError):
            listener.recvfrom(64)
    hostile.assert_still_serving()


def test_raw_socket_syscall_is_blocked(hostile: Hostile) -> None:
    _refused(hostile.attack("raw_socket"), "EPERM")
    hostile.assert_still_serving()


def test_writes_outside_the_data_dir_are_blocked(hostile: Hostile, tmp_path: Path) -> None:
    host_tmp = Path("/tmp") / f"gears-escape-{uuid.uuid4().hex}"
    code_dir = hostile.inst.gear_dir / "evil_hostile" / "planted.py"
    inside_code = ("/opt/gears/gear/evil_hostile/planted.py" if hostile.level == "strict"
                   else str(code_dir))
    for path in (str(host_tmp), inside_code, str(tmp_path / "planted.txt")):
        _refused(hostile.attack("write_file", path=path), "EACCES", "EROFS", "ENOENT")
    assert not host_tmp.exists() and not code_dir.exists()
    assert not (tmp_path / "planted.txt").exists()
    hostile.assert_still_serving()


@pytest.mark.parametrize("how", ["system", "popen", "execv"])
def test_running_a_shell_is_blocked(hostile: Hostile, how: str) -> None:
    outcome = hostile.attack(how)
    _refused(outcome)
    if how == "execv":
        assert outcome["errno"] == "EPERM"
    if how == "popen":
        assert outcome["errno"] in ("EPERM", "ENOENT", "EACCES"), outcome
    hostile.assert_still_serving()


def test_fork_bomb_is_blocked(hostile: Hostile) -> None:
    _refused(hostile.attack("fork_bomb"), "EPERM", "EAGAIN")
    hostile.assert_still_serving()


def test_memory_bomb_hits_the_address_space_limit(hostile: Hostile) -> None:
    assert hostile.attack("memory_bomb") == {"ok": False, "error": "MemoryError"}
    hostile.assert_still_serving()


def test_cpu_loop_is_killed_at_the_deadline(hostile: Hostile) -> None:
    with pytest.raises(GearTimeout):
        hostile.attack("cpu_loop")
    hostile.assert_still_serving()
    assert hostile.runtime.health()[hostile.inst.id]["restarts"] == 1


def test_fd_bomb_hits_the_open_files_limit(hostile: Hostile) -> None:
    outcome = hostile.attack("fd_bomb")
    _refused(outcome, "EMFILE")
    assert outcome["detail"] < 64
    hostile.assert_still_serving()


def test_file_size_bomb_hits_the_file_size_limit(hostile: Hostile) -> None:
    outcome = hostile.attack("fsize_bomb", big=str(hostile.inst.data_dir / "big.bin"))
    _refused(outcome, "EFBIG")
    assert outcome["detail"] <= 16 * 1024 * 1024
    assert (hostile.inst.data_dir / "big.bin").stat().st_size <= 16 * 1024 * 1024
    hostile.assert_still_serving()


@pytest.mark.parametrize("attack", ["process_vm_readv", "ptrace"])
def test_reading_the_engines_memory_is_blocked(hostile: Hostile, attack: str) -> None:
    _refused(hostile.attack(attack, pid=os.getpid()), "EPERM")
    hostile.assert_still_serving()


def test_new_user_namespace_is_blocked(hostile: Hostile) -> None:
    _refused(hostile.attack("unshare_user"), "EPERM")
    hostile.assert_still_serving()
