"""A subprocess whose combined stdout/stderr is collected line by line, for the deployment peers.

``conftest.Bridge`` (the jmp-bridge process) is one too. A reader thread appends lines under a
condition variable, :meth:`Process.wait_for_line` waits for a
regular expression with a deadline (no sleeps), :meth:`Process.stop` sends SIGTERM and waits
(SIGKILL and an error if it does not exit in time).
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time
from pathlib import Path


class Process:
    """A started subprocess with its output collected; ``name`` labels it in messages."""

    def __init__(self, name: str, args: list[str], *, cwd: Path | None = None, **popen_options):
        """``popen_options`` (env, pass_fds, preexec_fn) go to :class:`subprocess.Popen`."""
        self.name = name
        self.args = [str(arg) for arg in args]
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            self.args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, errors="replace", **popen_options,
        )
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, name=f"{name}-{self.pid}-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    def log(self) -> str:
        return "\n".join([f"$ {' '.join(self.args)}", *self.lines()])

    def wait_for_line(self, pattern: str, *, timeout: float, count: int = 1) -> list[str]:
        """Waits until ``count`` output lines match the regular expression ``pattern``; returns them."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matches = [line for line in self._lines if regex.search(line)]
                if len(matches) >= count:
                    return matches
                if self._eof:
                    raise AssertionError(f"{self.name} exited (status {self.proc.poll()}) before printing "
                                         f"{count} line(s) matching {pattern!r}:\n{self.log()}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {count} {self.name} line(s) "
                                         f"matching {pattern!r} (found {len(matches)}):\n{self.log()}")
                self._cond.wait(remaining)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signals the process (if still running) and returns its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            status = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} did not exit within {timeout}s of {sig!r}:\n{self.log()}") from None
        self._reader.join(timeout=5)
        return status
