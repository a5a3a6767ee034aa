"""Progress on a terminal: a live line on stderr for work that takes more than 2 s.

Nothing is written when stderr is not a terminal (piped, redirected, CI), so output
stays clean for machines.  The line is cleared before anything is printed to stdout, so
results never share a line with it.  Only the CLI creates these.
"""
from __future__ import annotations

import os
import sys
import threading
import time

SHOW_AFTER = 2.0   # seconds: quicker work shows nothing
REFRESH = 0.5      # seconds between redraws of the elapsed time


class _ClearingStream:
    """stdout while a progress line may be showing: the first write stops the progress."""

    def __init__(self, stream, progress):
        self._stream, self._progress = stream, progress

    def write(self, text):
        self._progress.stop()
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class Progress:
    """``with Progress("check k3", total=17) as progress: progress.step("nonnegative proved")``.
    Without steps it shows the elapsed time: ``fuzz: running, 5 s``."""

    def __init__(self, label: str, total: int | None = None, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)()) and not os.environ.get("CI")
        self.label, self.total, self.done, self.last = label, total, 0, ""
        self.start = time.monotonic()
        self.shown = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._stdout = None

    def __enter__(self):
        if self.live:
            self._stdout = sys.stdout
            sys.stdout = _ClearingStream(sys.stdout, self)
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        if self._stdout is not None:
            sys.stdout = self._stdout
            self._stdout = None
        return False

    def stop(self):
        """No more drawing; the line is cleared (idempotent)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            if self.shown:
                self.stream.write("\r\033[K")
                self.stream.flush()
                self.shown = False

    def step(self, what: str = ""):
        with self._lock:
            self.done += 1
            self.last = what
        self._draw()

    def _tick(self):
        while not self._stop.wait(REFRESH):
            self._draw()

    def _draw(self):
        if not self.live or self._stop.is_set():
            return
        elapsed = time.monotonic() - self.start
        if elapsed < SHOW_AFTER:
            return
        with self._lock:
            if self._stop.is_set():
                return
            if self.done == 0 and self.total is None:
                text = f"{self.label}: running, {elapsed:.0f} s"
            else:
                count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
                text = f"{self.label}: {count} done, {elapsed:.0f} s" + (f" (last: {self.last})" if self.last else "")
            self.stream.write("\r\033[K" + text[:150])
            self.stream.flush()
            self.shown = True
