"""Run the user's code where it cannot touch the verdict or the output.

The import of a user's file, its implementation and its torch term run in a forked
worker process that the harness owns:

- its stdout and stderr (file descriptors 1 and 2, so C-level writes too) go to a file
  the parent reads: a ``print`` cannot reach ``--json`` output;
- its address space is capped (``RLIMIT_AS``): a runaway allocation is a MemoryError in
  the worker, not the machine's out-of-memory killer;
- it has one wall-clock limit over all it does: a sleeping implementation uses no CPU,
  so a CPU limit alone would never end it;
- the worker and whatever it forks (the exhaustive sweep's workers) are one process
  group, killed together.

However the worker ends (it returns, raises, calls ``exit()`` or ``os._exit()``, gets a
signal, runs out of memory or time), the parent gets the value or a one-line reason.
Only data crosses back (pickled frames on a pipe): partial results sent with
:func:`send` while the work goes on, then the value.
"""
from __future__ import annotations

import os
import pickle
import resource
import select
import signal
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable

from verify.errors import UsageError

DEFAULT_SECONDS = 600.0  # the wall-clock limit when a command is given no --timeout
OUTPUT_KEPT = 64 * 1024  # characters of the user's output kept for the reader
_HEADER = struct.Struct("<Q")


def default_memory_bytes() -> int | None:
    """Half of physical memory, at most 8 GiB: room for the sweeps and torch, and a runaway allocation stops
    long before the machine's out-of-memory killer picks a process."""
    try:
        return min(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2, 8 * 2 ** 30)
    except (ValueError, OSError, AttributeError):
        return None


@dataclass(frozen=True)
class Outcome:
    """What came back: ``value`` when the work returned, else ``failure``, one line
    saying how the worker ended.  ``output`` is what the user's code printed."""

    value: Any = None
    failure: str | None = None
    output: str = ""


class UserCodeFailed(Exception):
    """The user's code ended its worker before anything could be checked (at import,
    say): the message is the one-line reason.  Exit code 3: nothing was decided."""


_pipe: int | None = None  # in a worker: the write end of the pipe to the parent


def send(message) -> None:
    """In a worker: hand ``message`` to the parent's ``on_message`` now (progress and
    partial results survive a later crash).  Outside a worker: nothing."""
    if _pipe is not None:
        _write_frame(_pipe, pickle.dumps(("message", message)))


def _write_frame(fd: int, payload: bytes) -> None:
    data = memoryview(_HEADER.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fd, data):]


def run_isolated(function: Callable, args: tuple = (), *, seconds: float = DEFAULT_SECONDS,
                 on_message: Callable[[Any], None] | None = None,
                 memory_bytes: int | None | str = "default") -> Outcome:
    """``function(*args)`` in a forked worker under a wall-clock limit of ``seconds``.
    A ``UsageError`` raised there is raised here (bad input stays exit 2).  ``seconds``
    is checked by the caller (``verify.api``: the one rule for --timeout)."""
    if memory_bytes == "default":
        memory_bytes = default_memory_bytes()
    if _pipe is not None:  # already in a worker: the limits hold here too
        try:
            return Outcome(value=function(*args))
        except UsageError:
            raise
        except BaseException as error:  # noqa: BLE001 - reported as data, as in a worker
            return Outcome(failure=_raised(error, memory_bytes))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # nothing buffered before the fork is written twice
        except (OSError, ValueError):
            pass
    read_fd, write_fd = os.pipe()
    output = tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:  # the worker: never returns into the caller's code
        try:
            os.close(read_fd)
            _worker(write_fd, output.fileno(), function, args, memory_bytes)
        finally:
            os._exit(70)
    os.close(write_fd)
    try:
        os.setpgid(pid, pid)  # set on both sides: whichever runs first
    except OSError:
        pass
    try:
        message, reason = _collect(pid, read_fd, seconds, on_message)
    finally:
        os.close(read_fd)
        _end_group(pid)
    output.seek(0)
    printed = output.read(OUTPUT_KEPT * 4).decode("utf-8", errors="replace")[:OUTPUT_KEPT]
    output.close()
    if message is None:
        return Outcome(failure=reason, output=printed)
    kind, payload = message
    if kind == "usage":
        raise UsageError(payload)
    if kind == "failure":
        return Outcome(failure=payload, output=printed)
    return Outcome(value=payload, output=printed)


def _worker(write_fd, output_fd, function, args, memory_bytes):
    global _pipe
    os.setpgid(0, 0)  # one group with whatever it forks: killed together
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    # new stream objects: a lock held by another thread at the fork stays held in the old ones
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False, buffering=1, errors="replace")
    sys.stderr = open(2, "w", closefd=False, buffering=1, errors="replace")
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if memory_bytes:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    if "torch" in sys.modules:  # as torch's own DataLoader workers do after a fork
        try:
            sys.modules["torch"].set_num_threads(1)
        except Exception:  # noqa: BLE001
            pass
    _pipe = write_fd
    try:
        message = ("value", function(*args))
    except UsageError as error:
        message = ("usage", str(error))
    except BaseException as error:  # noqa: BLE001 - every way out is reported as data
        message = ("failure", _raised(error, memory_bytes))
    try:
        payload = pickle.dumps(message)
    except Exception as error:  # noqa: BLE001 - e.g. a result holding a user's object
        payload = pickle.dumps(("failure", f"the result could not be sent back: {type(error).__name__}: {error}"))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    _write_frame(write_fd, payload)
    os._exit(0)


def _raised(error: BaseException, memory_bytes) -> str:
    if isinstance(error, SystemExit):
        return f"the user's code called exit({error.code!r})"
    if isinstance(error, MemoryError):
        limit = f" (limit {memory_bytes / 2 ** 30:.3g} GiB)" if memory_bytes else ""
        return f"the user's code ran out of memory{limit}"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return f"the user's code raised {text[:300]}"


def _collect(pid, read_fd, seconds, on_message):
    """Read frames until the value arrives, the worker ends, or the time runs out:
    (final message, None) or (None, one-line reason)."""
    deadline = time.monotonic() + seconds
    buffer = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, f"the user's code did not finish within {seconds:g} s (wall clock; --timeout)"
        ready, _, _ = select.select([read_fd], [], [], min(remaining, 1.0))
        if not ready:
            continue
        chunk = os.read(read_fd, 1 << 20)
        if not chunk:
            return None, _how_it_ended(pid)
        buffer += chunk
        while len(buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(buffer)
            if len(buffer) < _HEADER.size + size:
                break
            frame, buffer = buffer[_HEADER.size:_HEADER.size + size], buffer[_HEADER.size + size:]
            try:
                kind, payload = pickle.loads(frame)
            except Exception:  # noqa: BLE001 - the user's code wrote into the pipe
                return None, "the worker's messages were corrupted (the user's code wrote into the harness's pipe)"
            if kind == "message":
                if on_message is not None:
                    on_message(payload)
                continue
            return (kind, payload), None


def _how_it_ended(pid) -> str:
    """Why the worker closed the pipe, read without reaping it (its pid stays ours until
    ``_end_group`` has killed its group)."""
    for _ in range(100):
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is not None and info.si_pid == pid:
            break
        time.sleep(0.05)
    else:
        return "the worker closed its pipe to the harness without ending"
    if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
        try:
            name = signal.Signals(info.si_status).name
        except ValueError:
            name = str(info.si_status)
        hint = " (out of memory?)" if info.si_status == signal.SIGKILL else ""
        return f"the worker running the user's code was killed by {name}{hint}"
    return (f"the user's code ended the worker (exit code {info.si_status}, os._exit() or similar) "
            "before it returned")


def _end_group(pid) -> None:
    """Kill the worker's process group (stragglers included) and reap the worker."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
