"""The control-group layer's file protocol, for the hierarchy this host does not mount.

The limits themselves are shown holding by ``test_limits.py`` on whichever
hierarchy the host has (v1 controllers on the test machines today); these
tests pin what the other hierarchy's code reads and writes, on a directory
laid out like cgroupfs, and how mount tables are read.
"""

from __future__ import annotations

from pathlib import Path

from marketplace.runtime.cgroups import CgroupHost, CgroupLimits, _inside, _mounts, _own_groups

LIMITS = CgroupLimits(memory_bytes=192 * 1024 * 1024, pids=16, cpu_quota_us=50_000)


def test_v2_writes_memory_swap_pids_and_cpu_and_freezes(tmp_path: Path, monkeypatch) -> None:
    host = CgroupHost("v2", "test", {"unified": tmp_path})
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args, **kwargs) -> None:  # cgroupfs makes the files itself
        real_mkdir(self, *args, **kwargs)
        for name in ("memory.swap.max", "memory.oom.group"):
            (self / name).write_text("")

    monkeypatch.setattr(Path, "mkdir", mkdir)
    group = host.create("inst/1", LIMITS)
    monkeypatch.undo()
    assert group is not None
    leaf = group.paths["unified"]
    assert leaf.parent == tmp_path and "/" not in leaf.name
    assert (leaf / "memory.max").read_text() == str(192 * 1024 * 1024)
    assert (leaf / "memory.swap.max").read_text() == "0"
    assert (leaf / "memory.oom.group").read_text() == "1"
    assert (leaf / "pids.max").read_text() == "16"
    assert (leaf / "cpu.max").read_text() == "50000 100000"
    group.freeze()
    assert (leaf / "cgroup.freeze").read_text() == "1"
    group.thaw()
    assert (leaf / "cgroup.freeze").read_text() == "0"
    (leaf / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\n")
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\n")
    (leaf / "pids.events").write_text("max 3\n")
    assert group.cpu_usage_ns() == 1_500_000
    assert group.oom_kills() == 1
    assert group.pids_refused() == 3


def test_no_controllers_means_rlimits_only() -> None:
    host = CgroupHost(None, "no cgroup filesystem mounted: rlimits only")
    assert host.create("x", LIMITS) is None
    assert host.level == "rlimit only"


def test_mount_tables_of_both_hierarchies_are_read() -> None:
    mountinfo = (
        "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        "39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n")
    v1, v2 = _mounts(mountinfo)
    assert v1["cpu"] == v1["cpuacct"] == (Path("/sys/fs/cgroup/cpu,cpuacct"), "/")
    assert v1["memory"][0] == Path("/sys/fs/cgroup/memory")
    assert v2 == (Path("/sys/fs/cgroup/unified"), "/")
    own = _own_groups("4:memory:/svc/engine\n2:cpu,cpuacct:/\n0::/system.slice/gears.service\n")
    assert own == {"memory": "/svc/engine", "cpu": "/", "cpuacct": "/",
                   "": "/system.slice/gears.service"}
    assert _inside(Path("/sys/fs/cgroup"), "/", own[""]) == \
        Path("/sys/fs/cgroup/system.slice/gears.service")
    assert _inside(Path("/m"), "/svc", "/svc/engine") == Path("/m/engine")
