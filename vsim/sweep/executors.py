"""Where sweep points run: serially, in a local process pool, or on a Dask cluster."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from functools import partial
from typing import Any, TypeVar

from vsim.errors import ConfigError, UnavailableError
from vsim.processes import child_init

__all__ = [
    "R",
    "T",
    "default_jobs",
    "run_unordered",
]

T = TypeVar("T")
R = TypeVar("R")


def default_jobs() -> int:
    """All cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_unordered(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    jobs: int = 1,
    scheduler: str | None = None,
) -> Iterator[tuple[int, R]]:
    """Yield (index, fn(item)) as each item finishes, on the chosen executor.

    Results do not depend on the executor: every point seeds itself from its own key.
    `scheduler` is the address of a running Dask distributed scheduler (tcp://host:8786).
    """
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    if scheduler is not None:
        yield from _dask(fn, items, scheduler)
    elif jobs == 1 or len(items) <= 1:
        for i, item in enumerate(items):
            yield i, fn(item)
    else:
        yield from _pool(fn, items, min(jobs, len(items)))


def _pool(fn: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[tuple[int, R]]:
    """A local process pool whose workers die with this process (even on kill -9) and stop at
    once when the sweep does (Ctrl-C, an error, or the caller abandoning the iterator)."""
    pool = ProcessPoolExecutor(max_workers=workers, initializer=child_init)
    try:
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()
    except BaseException:
        procs = list(getattr(pool, "_processes", {}).values())  # no public way to stop them
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.join()
        raise
    pool.shutdown()


# Points per Dask task: enough tasks per worker that the last ones finish close together, few
# enough that the scheduler's round trip per task (a few ms) stays a small share of the work.
TASKS_PER_WORKER = 32


def _dask(fn: Callable[[T], R], items: Sequence[T], address: str) -> Iterator[tuple[int, R]]:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise UnavailableError(
            "scheduler needs dask.distributed: pip install 'vsim[dask]'"
        ) from None
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as e:
        raise ConfigError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    try:
        workers = max(sum(client.nthreads().values()), 1)
        size = max(len(items) // (workers * TASKS_PER_WORKER), 1)
        starts = range(0, len(items), size)
        chunks = [list(items[i : i + size]) for i in starts]
        futures = client.map(partial(_run_chunk, fn), chunks, pure=False)
        first = {f.key: i for i, f in zip(starts, futures, strict=True)}
        for fut in dask_completed(futures):
            results: list[Any] = fut.result()
            for j, result in enumerate(results):
                yield first[fut.key] + j, result
    finally:
        client.close()


def _run_chunk(fn: Callable[[T], R], chunk: list[T]) -> list[R]:
    """One Dask task: fn of each item of a chunk, in order."""
    return [fn(item) for item in chunk]
