"""Hard time limits for work that may hang (sympy's solveset, limit, simplify).

The work runs in a forked child process that is killed when its time is up, so a
timeout is a clean ``TimedOut`` result, never a hang.  Fork keeps imported modules and
sympy's caches, so starting a child costs milliseconds.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import time
from dataclasses import dataclass
from multiprocessing.connection import wait


@dataclass(frozen=True)
class TimedOut:
    seconds: float


@dataclass(frozen=True)
class Failed:
    """The child raised: the error's type and message."""

    error: str


def _child(connection, function, args):
    try:
        result = function(*args)
    except BaseException as error:  # noqa: BLE001 - reported to the parent as data
        result = Failed(f"{type(error).__name__}: {error}"[:500])
    try:
        connection.send_bytes(pickle.dumps(result))
    except Exception as error:  # noqa: BLE001 - e.g. an unpicklable result
        connection.send_bytes(pickle.dumps(Failed(f"unpicklable result: {error}")))
    connection.close()
    os._exit(0)


def run_all(calls, seconds: float, jobs: int = 1, on_done=None):
    """Run ``function(*args)`` for each (function, args) in forked children, at most
    ``jobs`` at once, each under a hard limit of ``seconds``.  Returns results in order;
    a call that timed out gives ``TimedOut``, one that raised gives ``Failed``.
    ``on_done(index)`` is called as each call finishes (for progress displays)."""
    context = mp.get_context("fork")
    calls = list(calls)
    results: list = [None] * len(calls)
    pending = list(enumerate(calls))
    running = {}  # connection -> (index, process, deadline)
    while pending or running:
        while pending and len(running) < max(1, jobs):
            index, (function, args) = pending.pop(0)
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(send, function, args), daemon=False)
            process.start()
            send.close()
            running[receive] = (index, process, time.monotonic() + seconds)
        now = time.monotonic()
        soonest = min(deadline for _, _, deadline in running.values())
        ready = wait(list(running), timeout=max(0.0, soonest - now))
        for connection in ready:
            index, process, _ = running.pop(connection)
            try:
                results[index] = pickle.loads(connection.recv_bytes())
            except (EOFError, OSError):
                results[index] = Failed("the worker process died")
            connection.close()
            process.join(1)
            if on_done:
                on_done(index)
        now = time.monotonic()
        for connection, (index, process, deadline) in list(running.items()):
            if now >= deadline:
                process.kill()
                process.join()
                connection.close()
                del running[connection]
                results[index] = TimedOut(seconds)
                if on_done:
                    on_done(index)
    return results
