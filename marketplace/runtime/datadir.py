"""A size and file-count quota for each installation's data dir, by a filesystem of its own.

Landlock lets a gear write only beneath its data dir, and RLIMIT_FSIZE caps
one file; neither bounds how much or how many. Where the engine runs as root
and the host has ``mkfs.ext4``, ``mount`` and loop devices, each data dir is
an **ext4 image of its own, loop-mounted** over the directory while the
installation runs:

- the image's size is the quota (``data_mb``, sparse on the host disk, so an
  empty data dir costs almost nothing) and its inode table the file count
  (``data_files``): past either the gear's write fails with ``ENOSPC``, an
  ``OSError`` it sees, and the runtime counts the failing call as
  ``data_quota``;
- the gear's files live in that filesystem, never in the engine's: filling it
  cannot fill the disk holding the engine's database and keys, and no hard
  link can reach across;
- it is mounted ``nosuid,nodev,noexec`` and owned by the installation's uid;
- it persists: the image stays beside the directory (``<dir>.ext4``) when the
  installation stops and is mounted again on the next start; uninstalling
  removes both (:func:`remove_data`).

Elsewhere (not root, no loop devices) the data dir is a plain directory and
the probe says there is no quota.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from marketplace.runtime.files import pid_alive, remove_tree

IMAGE_SUFFIX = ".ext4"
#: beside a mounted data dir: the pid of the engine process that mounted it
OWNER_SUFFIX = ".mounted-by"
#: system tools live in sbin, which a service's PATH may lack
_SEARCH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
_MOUNT_OPTIONS = "loop,nosuid,nodev,noexec,noatime"
_TIMEOUT_S = 30


class DataQuotaError(OSError):
    """The data dir's filesystem could not be created or mounted."""


@dataclass(frozen=True)
class DataQuota:
    """How much one installation may keep in its data dir."""

    size_mb: int = 64
    files: int = 4096


def image_for(data_dir: Path) -> Path:
    """Where ``data_dir``'s filesystem image lives (beside it)."""
    return data_dir.with_name(data_dir.name + IMAGE_SUFFIX)


def _owner_file(data_dir: Path) -> Path:
    return data_dir.with_name(data_dir.name + OWNER_SUFFIX)


def sweep_mounts(mountinfo: str | None = None) -> list[Path]:
    """Unmount data dirs whose engine process died without unmounting them (a
    killed vetting job, a crashed engine); returns the mount points released.

    A data dir mount is recognised by its loop device's backing file, which is
    always the mount point plus ``.ext4``; it is left alone while the process
    named in ``<dir>.mounted-by`` lives (a live runtime writes it before mounting).
    """
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return []
    released: list[Path] = []
    for line in mountinfo.splitlines():
        head, _, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if len(fields) < 5 or len(rest) < 2 or rest[0] != "ext4":
            continue
        point = Path(fields[4].replace("\\040", " "))
        if not point.name or _backing_file(rest[1]) != f"{point}{IMAGE_SUFFIX}":
            continue
        try:
            pid = int(_owner_file(point).read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid and pid_alive(pid):
            continue
        try:
            unmount_quota(point)
        except OSError:
            continue
        released.append(point)
    return released


def _backing_file(device: str) -> str | None:
    """The image behind ``/dev/loopN`` (without the kernel's `` (deleted)`` mark)."""
    name = os.path.basename(device)
    if not name.startswith("loop"):
        return None
    try:
        text = Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
    except OSError:
        return None
    return text.removesuffix(" (deleted)")


@cache
def probe_quota() -> tuple[bool, str]:
    """Whether data dirs can get a filesystem of their own here, and why not."""
    if not os.path.exists("/proc/self/mountinfo"):
        return False, "no data dir quota on this platform (only RLIMIT_FSIZE per file)"
    missing = [tool for tool in ("mkfs.ext4", "mount", "umount", "cp", "rm")
               if not shutil.which(tool, path=_SEARCH)]
    if os.geteuid() != 0:
        return False, ("no data dir quota: the engine is not root, so it cannot mount a "
                       "filesystem per installation (only RLIMIT_FSIZE per file)")
    if missing:
        return False, (f"no data dir quota: {', '.join(missing)} missing (install e2fsprogs "
                       "and mount); only RLIMIT_FSIZE per file")
    if not os.path.exists("/dev/loop-control"):
        return False, "no data dir quota: no loop devices (/dev/loop-control)"
    sweep_mounts()
    return True, "data dir quota: a loop-mounted ext4 image per installation"


def _run(argv: list[str]) -> None:
    tool = shutil.which(argv[0], path=_SEARCH)
    if tool is None:
        raise DataQuotaError(f"{argv[0]} is not installed")
    try:
        proc = subprocess.run([tool, *argv[1:]], capture_output=True, timeout=_TIMEOUT_S,
                              check=False, env={"PATH": _SEARCH, "LC_ALL": "C"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataQuotaError(f"{argv[0]} failed: {exc}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()[:300]
        raise DataQuotaError(f"{argv[0]} failed ({proc.returncode}): {err}")


def _make_image(image: Path, quota: DataQuota, owner: int) -> None:
    tmp = image.with_name(image.name + ".new")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as fh:  # sparse: blocks are allocated as the gear writes
        fh.truncate(quota.size_mb * 1024 * 1024)
    os.chmod(tmp, 0o600)
    # -N: the inode count is the file-count quota; -m 0: no blocks reserved for root;
    # no journal: less overhead in a small filesystem whose loss on a crash is the gear's
    _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-N", str(quota.files), "-O", "^has_journal",
          "-E", f"root_owner={owner}:{owner}", str(tmp)])
    os.replace(tmp, image)


def mount_quota(data_dir: Path, quota: DataQuota, owner: int) -> bool:
    """Mount ``data_dir``'s own filesystem over it (creating it the first time).

    Returns True when this call mounted it, False when it already was. Files
    a data dir held before it had a quota are copied in (``cp -a``, outside
    the engine's Python stack) and must fit.
    """
    if os.path.ismount(data_dir):
        return False
    image = image_for(data_dir)
    fresh = not image.exists()
    if fresh:
        _make_image(image, quota, owner)
    _owner_file(data_dir).write_text(str(os.getpid()))
    _run(["mount", "-t", "ext4", "-o", _MOUNT_OPTIONS, str(image), str(data_dir)])
    os.chmod(data_dir, 0o700)
    os.chown(data_dir, owner, owner)
    return True


def adopt_existing(data_dir: Path, quota: DataQuota, owner: int) -> bool:
    """Move what an unquota'd ``data_dir`` holds into its new filesystem, once;
    True when it did (and so mounted the filesystem)."""
    if image_for(data_dir).exists() or not any(data_dir.iterdir()):
        return False
    staging = data_dir.with_name(data_dir.name + ".old")
    os.rename(data_dir, staging)
    data_dir.mkdir(mode=0o700)
    mount_quota(data_dir, quota, owner)
    try:
        _run(["cp", "-a", "--", f"{staging}/.", str(data_dir)])
    except DataQuotaError:
        unmount_quota(data_dir)
        image_for(data_dir).unlink(missing_ok=True)
        data_dir.rmdir()
        os.rename(staging, data_dir)
        raise
    _run(["rm", "-rf", "--one-file-system", "--", str(staging)])
    return True


def unmount_quota(data_dir: Path) -> None:
    """Unmount ``data_dir``'s filesystem (the image keeps its contents)."""
    if os.path.ismount(data_dir):
        _run(["umount", str(data_dir)])
    _owner_file(data_dir).unlink(missing_ok=True)


def remove_data(data_dir: Path) -> None:
    """Remove an installation's data for good: unmount, delete the image and the
    directory (what is left, a plain directory from before quotas say, goes through
    :func:`~marketplace.runtime.files.remove_tree`: outside the engine's Python
    stack, with a deadline)."""
    unmount_quota(data_dir)
    image_for(data_dir).unlink(missing_ok=True)
    remove_tree(data_dir)
