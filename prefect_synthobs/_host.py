"""This machine's host name, read once per process."""

from __future__ import annotations

import socket
from functools import cache


@cache
def host_name() -> str:
    """``socket.gethostname()``, read once per process: a system call each time otherwise (about 0.1 ms in a
    worker process that has just woken up, where each task's context is unpickled, on a process pool and on
    Dask alike). A forked child keeps it: the host is the same."""
    return socket.gethostname()
