"""The escape suite: a hostile gear tries to break out, and every attempt is refused.

Runs the real launcher at every sandbox level the host reaches (``strict``
and ``standard``); a level the host cannot reach is skipped with the probe's
reason. After every attack the same runtime must still answer a benign call,
and the gear's write inside its own data dir must still work.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import socket
import stat
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from marketplace.runtime import GearCallError, GearTimeout, Installation, Runtime, SandboxError
from marketplace.runtime import runtime as runtime_module
from marketplace.runtime import sandbox as sandbox_module
from tests.marketplace.runtime.hostile import HOSTILE_SOURCE

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(60)]

SECRET = "hunter2-" + uuid.uuid4().hex
# LD_LIBRARY_PATH: the staged interpreter's own lib dir (standard, when libpython is shared)
WORKER_ENV_KEYS = {"LANG", "MALLOC_ARENA_MAX", "PYTHONDONTWRITEBYTECODE", "PWD", "LD_LIBRARY_PATH"}


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


# -- no worker runs as root; metadata, other processes and SysV IPC are refused ----------

METADATA_CALLS = ("chmod", "fchmod", "fchmodat2", "chown", "utime", "setxattr", "removexattr")


def test_worker_runs_under_an_unprivileged_uid(hostile: Hostile) -> None:
    who = hostile.attack("whoami")["detail"]
    assert 0 not in who["uid"] and 0 not in who["gid"] and 0 not in who["groups"], who
    assert not any(who["caps"]), who
    # the worker's uid owns its data dir and nothing of the host's
    assert hostile.inst.data_dir.stat().st_uid == who["uid"][0]
    assert who["uid"][0] != os.getuid()


def test_setuid_copy_of_a_binary_is_refused(hostile: Hostile) -> None:
    _refused(hostile.attack("setuid_copy"), "EPERM")
    copy = hostile.inst.data_dir / "suid-python"
    if copy.exists():
        st = copy.lstat()
        assert not st.st_mode & (stat.S_ISUID | stat.S_ISGID) and st.st_uid != 0, oct(st.st_mode)
    hostile.assert_still_serving()


@pytest.mark.parametrize("target", ["own_file", "root_secret"])
def test_file_metadata_changes_are_refused(hostile: Hostile, target: str) -> None:
    path = hostile.inst.data_dir / f"{target}.txt"
    if target == "root_secret":  # root's 0600 secret, lying where the gear can name it
        path.write_text(SECRET)
        os.chmod(path, 0o600)
        os.setxattr(path, "user.gears", b"keep")
    for how in METADATA_CALLS:
        outcome = hostile.attack("metadata", path=path.name, how=how,
                                 create=target == "own_file" and how == "chmod")
        # fchmod must open the file first, which root's 0600 secret refuses
        _refused(outcome, "EPERM", *(("EACCES",) if target == "root_secret" else ()))
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) in (0o600, 0o644), oct(st.st_mode)
    if target == "root_secret":
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
        assert os.getxattr(path, "user.gears") == b"keep"
        assert st.st_mtime > 1
    hostile.assert_still_serving()


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """Another root process on the host (standing in for the engine's helpers)."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _open_files_limit(pid: int) -> str:
    lines = Path(f"/proc/{pid}/limits").read_text().splitlines()
    return next(line for line in lines if line.startswith("Max open files"))


def test_prlimit_on_other_processes_is_refused(hostile: Hostile, bystander) -> None:
    before = _open_files_limit(bystander.pid), _open_files_limit(os.getpid())
    _refused(hostile.attack("prlimit", pid=bystander.pid), "EPERM", "ESRCH")
    _refused(hostile.attack("prlimit", pid=os.getpid(), read_only=True), "EPERM", "ESRCH")
    # seccomp cannot tell whose pid it is: any pid but 0 ("this process") is refused
    _refused(hostile.attack("prlimit", pid="self", read_only=True), "EPERM")
    assert (_open_files_limit(bystander.pid), _open_files_limit(os.getpid())) == before
    hostile.assert_still_serving()


def test_priority_and_scheduling_of_other_processes_are_refused(hostile: Hostile,
                                                                 bystander) -> None:
    pid = bystander.pid
    before = (os.getpriority(os.PRIO_PROCESS, pid), os.sched_getaffinity(pid),
              os.sched_getscheduler(pid))
    for attack in ("renice", "affinity", "scheduler"):
        _refused(hostile.attack(attack, pid=pid), "EPERM", "ESRCH")
    # process-group and user-wide forms reach more than the worker itself
    _refused(hostile.attack("renice", which=os.PRIO_PGRP, pid=0), "EPERM")
    _refused(hostile.attack("renice", which=os.PRIO_USER, pid=0), "EPERM")
    assert (os.getpriority(os.PRIO_PROCESS, pid), os.sched_getaffinity(pid),
            os.sched_getscheduler(pid)) == before
    hostile.assert_still_serving()


def test_signals_to_the_engine_are_refused(hostile: Hostile) -> None:
    _refused(hostile.attack("signal_engine", pid=os.getpid()), "EPERM", "ESRCH")
    hostile.assert_still_serving()


@pytest.mark.parametrize("kind", ["shm", "sem", "msg"])
def test_sysv_ipc_objects_cannot_be_created(hostile: Hostile, kind: str) -> None:
    _refused(hostile.attack("sysv", kind=kind), "EPERM")
    hostile.assert_still_serving()


@pytest.fixture
def root_segment() -> Iterator[int]:
    """A root-owned 0600 System V shared memory segment holding the secret."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    key = 0x4745_0000 | secrets.randbelow(0xFFFF)
    ident = libc.shmget(key, 4096, 0o1000 | 0o2000 | 0o600)  # IPC_CREAT | IPC_EXCL
    assert ident >= 0, os.strerror(ctypes.get_errno())
    addr = libc.shmat(ident, None, 0)
    ctypes.memmove(addr, SECRET.encode(), len(SECRET))
    libc.shmdt(ctypes.c_void_p(addr))
    try:
        yield key
    finally:
        libc.shmctl(ident, 0, None)  # IPC_RMID


def test_root_sysv_segment_cannot_be_attached(hostile: Hostile, root_segment: int) -> None:
    outcome = hostile.attack("sysv", kind="shm", key=root_segment)
    _refused(outcome, "EPERM", "ENOENT")
    assert SECRET[:16] not in str(outcome)
    hostile.assert_still_serving()


def test_dev_unsafe_worker_is_not_root_either(make_gear, installation,
                                              runtime_factory) -> None:
    if os.geteuid() != 0:
        pytest.skip("a non-root engine runs dev-unsafe workers under its own uid")
    rt = runtime_factory(level="dev-unsafe")
    inst = installation(make_gear(HOSTILE_SOURCE, name="evil/hostile", write=("traits.outcome",)))
    rt.start(inst)
    patch = rt.call(inst.id, "gear_on_event", event={"attack": "whoami"}, profile={})
    who = patch.set["traits.outcome"]["detail"]
    assert 0 not in who["uid"] and 0 not in who["gid"] and not any(who["caps"]), who


@pytest.mark.parametrize("level", ["standard", "dev-unsafe"])
def test_level_without_a_reachable_dedicated_uid_is_refused(level: str, tmp_path: Path,
                                                            make_gear, installation,
                                                            runtime_factory) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a root engine switches workers to a dedicated uid")
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    os.chmod(hidden, 0o700)  # no uid but root may pass: nothing can be staged beneath it
    rt = runtime_factory(level=level, root_dir=hidden / "runtime")
    inst = installation(make_gear("@hookimpl\ndef gear_on_event(event):\n    return None\n"))
    with pytest.raises(SandboxError) as err:
        rt.start(inst)
    assert err.value.code == "sandbox_uid_unavailable"
    assert str(hidden) in err.value.message and "root" in err.value.message


@pytest.mark.parametrize("level", ["strict", "standard"])
def test_worker_refuses_to_load_a_gear_as_root(level: str, make_gear, installation,
                                               runtime_factory, monkeypatch) -> None:
    """Were a plan ever to leave uid 0, the worker itself refuses before gear code runs."""
    if os.geteuid() != 0:
        pytest.skip("only a root engine could start a root worker")
    planner = getattr(runtime_module, f"plan_{level}")

    def as_root(*args: Any, **kwargs: Any) -> Any:
        plan = planner(*args, **kwargs)
        plan.user = None
        plan.start_sandbox["uid"] = None
        return plan

    monkeypatch.setattr(runtime_module, f"plan_{level}", as_root)
    rt = runtime_factory(level=level)
    gear = make_gear("import pathlib\npathlib.Path('ran-as-root').write_text('x')\n"
                     "@hookimpl\ndef gear_on_event(event):\n    return None\n")
    inst = installation(gear)
    with pytest.raises(GearCallError) as err:
        rt.start(inst)
    assert err.value.code == "load_failed"
    assert "refusing to run gear code as root" in err.value.message
    assert not (inst.data_dir / "ran-as-root").exists()


def test_standard_is_not_offered_without_a_dedicated_uid(monkeypatch) -> None:
    """A non-root engine without bubblewrap would share its uid with the worker."""
    monkeypatch.setattr(sandbox_module.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sandbox_module.shutil, "which", lambda name: None)
    report = sandbox_module.probe_sandbox_level.__wrapped__()
    assert report.level == "dev-unsafe", report
    assert any("standard" in note and "not offered" in note for note in report.notes)
