"""What the machine, or the container, gives this process: memory and CPUs.

A container's limits are its control group's: cgroup v2 (``memory.max``, ``cpu.max``)
or v1 (``memory.limit_in_bytes``, ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), and
hybrid hosts have both. The group is the one ``/proc/self/cgroup`` names, found under
the mount ``/proc/self/mountinfo`` lists for its hierarchy; its ancestors up to the
mount's root limit it too, so the smallest limit on the way up counts. Nothing here
writes anything, and every reader answers None where the kernel gives no limit.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

#: cgroup v1 reports "no limit" as a page-counter maximum near 2**63.
_V1_UNLIMITED = 1 << 62


def physical_memory() -> int:
    """The machine's RAM in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_limit() -> int | None:
    """The control group's memory limit in bytes, or None where there is none (or it is
    no smaller than the machine's RAM)."""
    limits = []
    for directory in _groups("memory"):
        for name in ("memory.max", "memory.limit_in_bytes"):
            value = _read_int(directory / name)
            if value is not None and value < _V1_UNLIMITED:
                limits.append(value)
    limit = min(limits, default=None)
    return limit if limit is not None and limit < physical_memory() else None


def cpu_limit() -> float | None:
    """The control group's CPU quota in CPUs (``cpu.max`` 200000 100000 is 2.0), or None."""
    quotas = []
    for directory in _groups("cpu"):
        text = _read(directory / "cpu.max")
        if text is not None:
            quota, _, period = text.partition(" ")
            if quota != "max" and period:
                quotas.append(int(quota) / int(period))
            continue
        quota_us = _read_int(directory / "cpu.cfs_quota_us")
        period_us = _read_int(directory / "cpu.cfs_period_us")
        if quota_us is not None and quota_us > 0 and period_us:
            quotas.append(quota_us / period_us)
    return min(quotas, default=None)


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask (``taskset``, cpusets), no more than
    its control group's quota rounded up, at least 1."""
    try:
        affinity = len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
    quota = cpu_limit()
    if quota is None:
        return affinity
    return max(1, min(affinity, math.ceil(quota)))


# ---------------------------------------------------------------- the control groups


def _groups(controller: str) -> list[Path]:
    """The directories of this process's group for ``controller`` and its ancestors,
    in every hierarchy that has it (v1 with the controller, and v2)."""
    directories = []
    for mount_root, mount_point, controllers in _mounts():
        if controllers is not None and controller not in controllers:
            continue
        for own in _membership(controllers):
            relative = os.path.relpath(own, mount_root)
            if relative.startswith(".."):  # outside this mount (no cgroup namespace)
                relative = "."
            path = Path(mount_point) / relative
            while True:
                directories.append(path)
                if path == Path(mount_point) or path.parent == path:
                    break
                path = path.parent
    return directories


def _mounts() -> list[tuple[str, str, frozenset[str] | None]]:
    """(root, mount point, v1 controllers or None for v2) of each cgroup mount."""
    mounts = []
    text = _read(Path("/proc/self/mountinfo")) or ""
    for line in text.splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, point, fstype = _unescape(fields[3]), _unescape(fields[4]), tail[0]
        if fstype == "cgroup2":
            mounts.append((root, point, None))
        elif fstype == "cgroup":
            mounts.append((root, point, frozenset(tail[2].split(","))))
    return mounts


def _membership(controllers: frozenset[str] | None) -> list[str]:
    """This process's group path in the hierarchy with ``controllers`` (None: v2)."""
    paths = []
    for line in (_read(Path("/proc/self/cgroup")) or "").splitlines():
        number, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        if controllers is None:
            wanted = number == "0" and names == ""  # v2's one line
        else:
            wanted = bool(names) and bool(set(names.split(",")) & controllers)
        if wanted:
            paths.append(path)
    return paths


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (``\\040`` for a space)."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    if text is None or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None
