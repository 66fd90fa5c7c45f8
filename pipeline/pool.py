"""Process pools beside Polars: a worker that ends with the process that started it.

Used by the receipts' and the ГИС ЖКХ export's ``forkserver`` pools.
"""

from __future__ import annotations

import os
import time


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
