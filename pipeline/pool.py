"""Process pools beside Polars: a worker that ends with the process that started it.

Used by the receipts' ``forkserver`` pool; :func:`worker_pool` is the ГИС ЖКХ export's and the
migration's.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager


def alive(pid: int) -> bool:
    """Whether a process ``pid`` runs (anyone's: one of another user answers ``EPERM``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def die_with(main_pid: int) -> None:
    """End this worker as soon as the process that started the pool is gone.

    A killed close or export must leave no worker behind still writing into its abandoned
    staging folder. The pool's workers are children of the forkserver, not of the
    caller, and each holds both ends of the pool's queues, so neither a parent-death
    signal nor an end-of-file reaches them: a daemon thread waits on a pidfd of the
    close (exact, no pid reuse; Linux ≥ 5.3) or, elsewhere, polls for it.
    """
    import select
    import threading

    def watch() -> None:
        try:
            fd = os.pidfd_open(main_pid)
        except (AttributeError, OSError):
            fd = None
        if fd is not None:
            select.select([fd], [], [])
        else:
            while alive(main_pid):
                time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-close", daemon=True).start()


def default_workers() -> int:
    """The processes a large export or migration uses: the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


#: The pool workers' environment, read by the libraries when a worker starts (an allocator
#: variable the operator set stays as set):
#: * one Polars thread a worker: the pool is the parallelism, and a Polars pool in every worker
#:   only spins beside the others on the same cores;
#: * the allocators keep the memory they were given instead of handing it back and faulting it
#:   in again for the next slice (jemalloc, Polars' allocator, and glibc's, for the messages'
#:   bytes): a slice of 10 000 accounts took 1.34 s with 110 000 page faults, 1.21 s with 31 000
#:   (the faults are dear where system calls are, as in a sandbox). The workers end with the
#:   pool, and their memory with them.
WORKER_ENV = {"POLARS_MAX_THREADS": "1", "_RJEM_MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1",
              "MALLOC_MMAP_THRESHOLD_": str(128 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


@contextmanager
def worker_pool(workers: int, threads: int = 1) -> Iterator[ProcessPoolExecutor | None]:
    """A ``forkserver`` pool of ``workers`` processes (safe beside Polars' threads), its processes
    started at once — they import while this process prepares their tasks; None for one.
    ``threads``: each worker's Polars threads (more than one where the workers' tasks are few
    and unequal, so that one left alone uses the cores the others have finished with)."""
    if workers <= 1:
        yield None
        return
    context = multiprocessing.get_context("forkserver")
    # :data:`WORKER_ENV` holds for a forkserver started now (one an earlier pool of this process
    # started keeps its own); this process's own Polars and allocators stay as they are.
    saved = {name: os.environ.get(name) for name in WORKER_ENV}
    for name, value in {**WORKER_ENV, "POLARS_MAX_THREADS": str(threads)}.items():
        if name == "POLARS_MAX_THREADS" or name not in os.environ:  # the workers' threads, always
            os.environ[name] = value
    try:
        with ProcessPoolExecutor(workers, context, initializer=die_with,
                                 initargs=(os.getpid(),)) as pool:
            for _ in range(workers):
                pool.submit(os.getpid)  # each submit while none is idle starts a process
            try:
                yield pool
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        for name, was in saved.items():
            if was is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = was
