"""Hard time limits for work that may hang (sympy's solveset, limit, simplify).

The work runs in a forked child process.  Its limit counts the child's own CPU time,
not wall-clock time, so the same work gets the same result on an idle and on a busy
machine: a profiling timer (``ITIMER_PROF``, user + system CPU time of the child) raises
``CpuTimeExceeded`` at the limit, ``RLIMIT_CPU`` kills a child that does not stop (a long
call in C), and a generous wall-clock backstop in the parent kills a child that hangs
without using CPU.  A timeout is a clean ``TimedOut`` result, never a hang.  Fork keeps
imported modules and sympy's caches, so starting a child costs milliseconds.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import pickle
import resource
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import wait

# The wall-clock backstop: a child gets this many times its CPU limit, plus a constant,
# in real time.  It only stops a child that hangs without computing (a 2-core machine
# running 12 busy processes gives each a sixth of a core: still well inside it).
WALL_FACTOR = 12.0
WALL_EXTRA = 60.0
# RLIMIT_CPU (whole seconds) stops a child the timer could not interrupt.
HARD_EXTRA = 5


@dataclass(frozen=True)
class TimedOut:
    seconds: float


@dataclass(frozen=True)
class Failed:
    """The child raised: the error's type and message."""

    error: str


class CpuTimeExceeded(BaseException):
    """Raised in the child when its CPU time runs out.  A BaseException, so that the
    ``except Exception`` clauses around sympy calls cannot swallow it."""


@dataclass(frozen=True)
class Finished:
    """A child's result with the CPU seconds (user + system) it used."""

    result: object
    cpu_seconds: float


class StepTimeExceeded(BaseException):
    """Raised inside ``cpu_limited`` when one step (a solveset call) runs out of its own
    CPU budget; the enclosing limit keeps running."""


_steps: list = []  # active cpu_limited budgets, innermost last: (outer remaining, budget)


def _on_cpu_limit(signum, frame):
    if _steps:
        raise StepTimeExceeded()
    raise CpuTimeExceeded()


@contextmanager
def cpu_limited(seconds: float):
    """Run a step under ``seconds`` of this process's CPU time (StepTimeExceeded when
    it runs out), inside whatever limit the process already has: the outer profiling
    timer is restored, less the time the step used.  Nested use is not supported (an
    inner step runs under the outer step's limit only)."""
    if _steps:
        yield
        return
    outer, _ = signal.getitimer(signal.ITIMER_PROF)
    if outer and outer <= seconds:
        yield  # the whole limit ends first: nothing to add
        return
    previous = signal.signal(signal.SIGPROF, _on_cpu_limit)
    start = time.process_time()
    _steps.append((outer, seconds))
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        _steps.pop()
        signal.signal(signal.SIGPROF, previous)
        if outer:
            left = outer - (time.process_time() - start)
            if left <= 0:
                raise CpuTimeExceeded()
            signal.setitimer(signal.ITIMER_PROF, left)


def _cpu_used() -> float:
    return time.process_time()  # user + system CPU time of this process


def _cpu_used_with_children() -> float:
    """This process's CPU time and that of its finished children (nested limits)."""
    times = os.times()
    return time.process_time() + times.children_user + times.children_system


def _child(connection, function, args, seconds):
    signal.signal(signal.SIGPROF, _on_cpu_limit)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    _, inherited = resource.getrlimit(resource.RLIMIT_CPU)  # a parent's limit still holds
    soft = int(math.ceil(_cpu_used() + seconds)) + HARD_EXTRA
    if inherited != resource.RLIM_INFINITY:
        soft = min(soft, inherited)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, inherited))
    try:
        result = function(*args)
    except CpuTimeExceeded:
        result = TimedOut(seconds)
    except BaseException as error:  # noqa: BLE001 - reported to the parent as data
        result = Failed(f"{type(error).__name__}: {error}"[:500])
    signal.setitimer(signal.ITIMER_PROF, 0)
    try:
        payload = pickle.dumps(Finished(result, _cpu_used_with_children()))
    except Exception as error:  # noqa: BLE001 - e.g. an unpicklable result
        payload = pickle.dumps(Finished(Failed(f"unpicklable result: {error}"), _cpu_used_with_children()))
    connection.send_bytes(payload)
    connection.close()
    os._exit(0)


def wall_backstop(seconds: float) -> float:
    """The real time after which a child with a CPU limit of ``seconds`` is killed."""
    return WALL_FACTOR * seconds + WALL_EXTRA


def run_all(calls, seconds: float, jobs: int = 1, on_done=None, cpu_times=None, on_result=None):
    """Run ``function(*args)`` for each (function, args) in forked children, at most
    ``jobs`` at once, each under a limit of ``seconds`` of its own CPU time.  Returns
    results in order; a call that ran out of time gives ``TimedOut``, one that raised
    gives ``Failed``.  ``on_done(index)`` is called as each call finishes (for progress
    displays), ``on_result(index, result)`` likewise with the result.  ``cpu_times``, a
    list, receives each call's CPU seconds, its own children's included (None when the
    child was killed)."""
    context = mp.get_context("fork")
    calls = list(calls)
    results: list = [None] * len(calls)
    used: list = [None] * len(calls)
    pending = list(enumerate(calls))
    running = {}  # connection -> (index, process, wall deadline)
    while pending or running:
        while pending and len(running) < max(1, jobs):
            index, (function, args) = pending.pop(0)
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(send, function, args, seconds), daemon=False)
            process.start()
            send.close()
            running[receive] = (index, process, time.monotonic() + wall_backstop(seconds))
        now = time.monotonic()
        soonest = min(deadline for _, _, deadline in running.values())
        ready = wait(list(running), timeout=max(0.0, soonest - now))
        for connection in ready:
            index, process, _ = running.pop(connection)
            try:
                finished = pickle.loads(connection.recv_bytes())
                results[index], used[index] = finished.result, finished.cpu_seconds
            except (EOFError, OSError):
                process.join(1)
                killed_by_limit = process.exitcode in (-signal.SIGXCPU, -signal.SIGKILL)
                results[index] = TimedOut(seconds) if killed_by_limit else Failed("the worker process died")
            connection.close()
            process.join(1)
            if on_done:
                on_done(index)
            if on_result:
                on_result(index, results[index])
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
                if on_result:
                    on_result(index, results[index])
    if cpu_times is not None:
        cpu_times[:] = used
    return results
