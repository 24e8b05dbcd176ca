"""Where tasks run: in this process, in local worker processes, or on a dask.distributed cluster.

Every executor takes module-level functions and picklable arguments and yields
``(tag, outcome)`` as tasks finish, where the outcome is the return value or the
exception the task raised: a failing task never stops the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import AbstractContextManager
from typing import Any

from pipelines.config import ExecutorConfig

Job = tuple[Any, Callable[..., Any], tuple[Any, ...]]  # (tag, function, arguments)


class _Inline(AbstractContextManager):
    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[Any, Any]]:
        for tag, fn, args in jobs:
            try:
                yield tag, fn(*args)
            except Exception as exc:  # recorded by the caller, never raised across the batch
                yield tag, exc

    def __exit__(self, *exc: object) -> None:
        return None


def worker_threads(workers: int) -> int:
    """Threads each of ``workers`` worker processes may use for its filters: the cores shared out, at least 1.

    Without this, every worker's ITK filters (and BLAS) start one thread per core, and two workers on two cores
    run four threads that evict each other's caches.
    """
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _thread_env(threads: int) -> dict[str, str]:
    return {name: str(threads) for name in ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "OMP_NUM_THREADS",
                                            "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def _limit_threads(threads: int) -> None:
    """Worker initializer: at most ``threads`` threads for ITK filters (and, for libraries not loaded yet, BLAS)."""
    import sys

    os.environ.update(_thread_env(threads))
    if "SimpleITK" in sys.modules:  # loaded before the fork: its default was set from the core count
        sys.modules["SimpleITK"].ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


class _Local(AbstractContextManager):
    def __init__(self, workers: int) -> None:
        self._pool = ProcessPoolExecutor(max_workers=workers, initializer=_limit_threads,
                                         initargs=(worker_threads(workers),))
        self._workers = workers

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[Any, Any]]:
        # Keep at most 2x workers in flight, so memory stays bounded by a few studies, not the archive.
        pending: dict[Future, Any] = {}
        queue = list(jobs)
        while queue or pending:
            while queue and len(pending) < 2 * self._workers:
                tag, fn, args = queue.pop(0)
                pending[self._pool.submit(fn, *args)] = tag
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                tag = pending.pop(fut)
                exc = fut.exception()
                yield tag, (exc if exc is not None else fut.result())

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class _Dask(AbstractContextManager):
    def __init__(self, address: str | None, workers: int) -> None:
        from distributed import Client, LocalCluster

        self._cluster = None
        if address:
            self._client = Client(address)
        else:
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None, host="127.0.0.1",
                                         env=_thread_env(worker_threads(workers)))
            self._client = Client(self._cluster)

    def run(self, jobs: Sequence[Job]) -> Iterator[tuple[Any, Any]]:
        from distributed import as_completed

        futures = {}
        for tag, fn, args in jobs:
            futures[self._client.submit(fn, *args, pure=False)] = tag
        for fut in as_completed(list(futures)):
            tag = futures[fut]
            if fut.status == "error":
                yield tag, fut.exception()
            else:
                yield tag, fut.result()

    def __exit__(self, *exc: object) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(config: ExecutorConfig) -> _Inline | _Local | _Dask:
    """The executor a config asks for; ``workers`` defaults to the number of cores."""
    workers = config.workers or os.cpu_count() or 1
    if config.kind == "dask":
        return _Dask(config.address, workers)
    if workers == 1:
        return _Inline()
    return _Local(workers)
