"""The pool's size from memory (``pool.memory_per_shell``): as many shells as the
container's memory limit, or the machine's RAM, holds after ``pool.memory_reserved``.

Applied to the configuration at start and on every SIGHUP, before anything else reads
``pool.max``, so the pool, ``/readyz`` (which the registration reports) and the shells'
thread count (``shell.threads`` 0 divides the CPUs by ``pool.max``) all see one number.
"""

from __future__ import annotations

import logging

from rexec import host
from rexec.config import Config

log = logging.getLogger("rexec.compute")

MIB = 1024 * 1024


def fit(memory: int, config: Config, source: str = "the memory") -> int:
    """Shells that ``memory`` bytes hold under ``config``'s ``pool.memory_per_shell`` and
    ``pool.memory_reserved`` (no more than an explicit ``pool.max``); RuntimeError when
    not one does."""
    per_shell = config["pool.memory_per_shell"]
    reserved = config["pool.memory_reserved"]
    fits = (memory - reserved) // per_shell
    if fits < 1:
        raise RuntimeError(
            f"pool.memory_per_shell: {per_shell // MIB} MiB a shell leaves no room for one "
            f"in {memory // MIB} MiB ({source}) less pool.memory_reserved "
            f"({reserved // MIB} MiB)"
        )
    return min(fits, config["pool.max"]) if "pool.max" in config.explicit else fits


def sized(config: Config) -> Config:
    """``config`` with ``pool.max`` (and ``pool.initial`` no larger) from memory, when
    ``pool.memory_per_shell`` is above 0; RuntimeError when not one shell fits."""
    if config["pool.memory_per_shell"] <= 0:
        return config
    limit = host.memory_limit()
    source = "the control group's memory limit"
    if limit is None:
        limit, source = host.physical_memory(), "the machine's memory"
    most = fit(limit, config, source)
    capped = most < (limit - config["pool.memory_reserved"]) // config["pool.memory_per_shell"]
    log.info(
        "pool.max = %d: %d MiB (%s) less %d MiB reserved, %d MiB a shell%s",
        most,
        limit // MIB,
        source,
        config["pool.memory_reserved"] // MIB,
        config["pool.memory_per_shell"] // MIB,
        f" (at most pool.max {config['pool.max']})" if capped else "",
    )
    return config.replace(pool_max=most, pool_initial=min(config["pool.initial"], most))
