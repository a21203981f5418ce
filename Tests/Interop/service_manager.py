"""A stand-in for systemd as a service manager, speaking the real protocol to jmp-bridge.

systemd itself cannot run here as PID 1, so this plays its part of the contract, as documented in
sd_notify(3), sd_listen_fds(3) and systemd.service(5):

* a ``NOTIFY_SOCKET``: an ``AF_UNIX`` datagram socket that receives ``KEY=VALUE`` lines, with
  descriptors attached as ``SCM_RIGHTS`` for ``FDSTORE=1`` (kept under their ``FDNAME=``,
  dropped again on ``FDSTOREREMOVE=1``);
* socket activation: listening sockets (and the stored descriptors) are placed at fd 3, 4, … of
  the started process, announced by ``LISTEN_FDS``, ``LISTEN_PID`` (the child's own pid, set
  between fork and exec) and ``LISTEN_FDNAMES``;
* the watchdog: ``WATCHDOG_USEC`` and ``WATCHDOG_PID``.
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Notification:
    """One datagram: its assignments in order, the descriptors that came with it, and when."""

    fields: dict[str, str]
    fds: list[int] = field(default_factory=list)
    at: float = 0.0

    def __contains__(self, key: str) -> bool:
        return key in self.fields

    def __getitem__(self, key: str) -> str:
        return self.fields[key]


class ServiceManager:
    """Receives notifications on ``directory/notify`` and starts services the way systemd does."""

    def __init__(self, directory: Path):
        self.path = str(directory / "notify")
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.notifications: list[Notification] = []
        #: The file-descriptor store: name → descriptors, as FDSTORE=1/FDNAME= left them.
        self.store: dict[str, list[int]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._receive, name="notify-socket", daemon=True)
        self._thread.start()

    # -- the notify socket

    def _receive(self):
        fd_size = array.array("i").itemsize
        while True:
            try:
                data, ancillary, _, _ = self.socket.recvmsg(65536, socket.CMSG_SPACE(64 * fd_size))
            except OSError:
                return
            if not data and self._closed:
                return
            fds: list[int] = []
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    received = array.array("i")
                    received.frombytes(payload[: len(payload) - len(payload) % fd_size])
                    fds.extend(received)
            fields = {}
            for line in data.decode(errors="replace").split("\n"):
                if "=" in line:
                    key, value = line.split("=", 1)
                    fields[key] = value
            note = Notification(fields, fds, time.monotonic())
            with self._cond:
                if fields.get("FDSTORE") == "1":
                    self.store.setdefault(fields.get("FDNAME", "stored"), []).extend(fds)
                else:
                    for fd in fds:
                        os.close(fd)
                if fields.get("FDSTOREREMOVE") == "1":
                    for fd in self.store.pop(fields.get("FDNAME", ""), []):
                        os.close(fd)
                self.notifications.append(note)
                self._cond.notify_all()

    def wait_for(self, key: str, value: str | None = None, *, after: int = 0, timeout: float = 20.0,
                 predicate=None) -> tuple[int, Notification]:
        """The first notification from index ``after`` on that sets ``key`` (to ``value``, if
        given, and satisfying ``predicate``); returns its index and itself."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index in range(after, len(self.notifications)):
                    note = self.notifications[index]
                    if key in note and (value is None or note[key] == value) and (predicate is None or predicate(note)):
                        return index, note
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [n.fields for n in self.notifications[after:]]
                    raise AssertionError(f"no {key}={value or '*'} notification within {timeout}s; got {seen}")
                self._cond.wait(remaining)

    def since(self, index: int) -> list[Notification]:
        with self._cond:
            return list(self.notifications[index:])

    def count(self) -> int:
        with self._cond:
            return len(self.notifications)

    # -- starting a service

    def launch_options(self, sockets: list[tuple[int, str]], *, watchdog_usec: int | None = None,
                       include_store: bool = True) -> dict:
        """Popen options that start a process as systemd would: ``sockets`` (fd, name) and then
        the stored descriptors at fd 3, 4, …, with the activation and notify variables."""
        passed = list(sockets)
        if include_store:
            with self._cond:
                for name, fds in self.store.items():
                    passed += [(fd, name) for fd in fds]
        sources = [fd for fd, _ in passed]
        names = ":".join(name for _, name in passed)
        variables = {"NOTIFY_SOCKET": self.path}
        if passed:
            variables |= {"LISTEN_FDS": str(len(passed)), "LISTEN_FDNAMES": names}
        if watchdog_usec is not None:
            variables["WATCHDOG_USEC"] = str(watchdog_usec)

        def in_child():
            # Between fork and exec: move the descriptors to 3, 4, … (via copies above any of
            # them, so none is overwritten before it is moved) and name this very process.
            copies = [fcntl.fcntl(fd, fcntl.F_DUPFD, 200) for fd in sources]
            for index, copy in enumerate(copies):
                os.dup2(copy, 3 + index)
                os.close(copy)
            for key, value in variables.items():
                os.environ[key] = value
            if passed:
                os.environ["LISTEN_PID"] = str(os.getpid())
            if watchdog_usec is not None:
                os.environ["WATCHDOG_PID"] = str(os.getpid())

        # close_fds=False: the descriptors placed in in_child must survive until exec (Python's
        # own descriptors are close-on-exec anyway).
        return {"close_fds": False, "preexec_fn": in_child}

    def close(self):
        self._closed = True
        self.socket.close()
        with self._cond:
            for fds in self.store.values():
                for fd in fds:
                    os.close(fd)
            self.store.clear()


def listening_unix_socket(path: Path) -> socket.socket:
    """What a ``ListenStream=PATH`` socket unit creates."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(64)
    return sock
