"""Helpers for tests that start Ray instances of their own beside others on the same machine."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path

# Defaults of another Ray instance on this machine: GCS, dashboard, client server, agent.
RAY_DEFAULT_PORTS = {6379, 8265, 10001, 52365}


def free_ports(count):
    """``count`` distinct ports free on every interface, none of them a Ray default."""
    sockets = []
    try:
        while len(sockets) < count:
            sock = socket.socket()
            sock.bind(("", 0))
            if sock.getsockname()[1] in RAY_DEFAULT_PORTS:
                sock.close()
                continue
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def own_processes(marker, pgid=None):
    """PIDs (Linux /proc) whose environment holds ``marker``, or in process group ``pgid``.

    ``marker`` is an entry such as ``b"RAY_TMPDIR=/tmp/hatrpo-xyz"`` that only the processes
    of one test's Ray instance inherit; other users' processes we cannot read are skipped.
    """
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            # Fields after the parenthesised command: state, ppid, pgrp, ...
            process_group = int(stat.rsplit(")", 1)[1].split()[2])
            environ = (entry / "environ").read_bytes()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not ours to read
        if process_group == pgid or marker in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def reap(marker, pgid=None, timeout_s=30.0):
    """Waits up to ``timeout_s`` for :func:`own_processes` to exit, then SIGKILLs the rest.

    Returns the PIDs that had to be killed (empty when everything stopped by itself).
    """
    deadline = time.monotonic() + timeout_s
    while (left := own_processes(marker, pgid)) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left
