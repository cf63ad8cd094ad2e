"""moto's S3 server with ``TCP_NODELAY`` on each accepted connection: ``python _moto_nodelay.py -H HOST -p PORT``.

moto serves through werkzeug's development server, which writes a response's status line, each header and the
body in separate ``send`` calls with Nagle's algorithm on. A small write that follows another then waits for the
client's ACK, and a client delaying its ACKs (Linux does, up to 40 ms) stalls the request: measured here, a
PutObject from pyarrow's S3 client took 15-20 ms instead of 5 ms on about every other request. S3 itself, and
servers users run in its place (MinIO: Go sets ``TCP_NODELAY`` by default), do not wait so. ``bench_writers``
reports the store against both this server and the stock one.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from typing import Any

import werkzeug.serving

_setup = werkzeug.serving.WSGIRequestHandler.setup


def _setup_nodelay(self: Any) -> None:
    _setup(self)
    with contextlib.suppress(OSError):  # not a TCP socket
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


werkzeug.serving.WSGIRequestHandler.setup = _setup_nodelay  # type: ignore[method-assign]

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
