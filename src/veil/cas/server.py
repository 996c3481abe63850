"""Running CAS: uvicorn over TLS, client certificates optional and checked against the client CA.

uvicorn does not hand the peer certificate to the application, so the HTTP protocol below puts
it into the per-connection state that every request's `request.state` starts from.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # httptools parses HTTP in C, several times faster than h11
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover
    _Base = H11Protocol  # type: ignore[assignment,misc]

from veil.cas.state import CasFiles
from veil.cas.store import make_engine
from veil.errors import UserError

__all__ = ["PeerCertProtocol", "parse_listen", "serve"]

DEFAULT_PORT = 8081
_APP = "veil.cas.app:app_from_env"


class PeerCertProtocol(_Base):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            self.app_state = {**self.app_state, "veil_peer_cert": der}
        super().connection_made(transport)


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep:
        host, port = listen, str(DEFAULT_PORT)
    try:
        number = int(port)
    except ValueError:
        raise UserError(
            f"--listen {listen!r}: the port is not a number",
            hint="use HOST:PORT, e.g. 127.0.0.1:8081",
        ) from None
    if not 0 < number < 65536:
        raise UserError(f"--listen {listen!r}: port out of range")
    return host.strip("[]") or "0.0.0.0", number


def serve(
    files: CasFiles, db_url: str | None, listen: str | list[str], workers: int = 1,
    log_level: str = "warning",
) -> None:
    """Serve until interrupted; several `listen` addresses are one process's sockets."""
    addrs = [parse_listen(a) for a in ([listen] if isinstance(listen, str) else listen)]
    if len(addrs) > 1 and workers > 1:
        raise UserError("several --listen addresses are served by one worker process",
                        hint="give one --listen with --workers, or drop --workers")
    url = db_url or files.default_db_url
    make_engine(url).dispose()  # create tables once, and fail here (not in a worker) if we cannot
    os.environ["VEIL_CAS_DIR"] = str(files.root)
    os.environ["VEIL_CAS_DB"] = url
    host, port = addrs[0]
    sockets: list[socket.socket] = []
    if len(addrs) > 1:  # bound here, all or none: a port taken on one address stops the start
        for h, pt in addrs:
            sock = socket.socket(socket.AF_INET6 if ":" in h else socket.AF_INET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((h, pt))
            except OSError as err:
                sock.close()
                for s in sockets:
                    s.close()
                raise UserError(f"--listen {h}:{pt}: {err.strerror}") from None
            sockets.append(sock)
    options: dict[str, Any] = {
        "factory": True,
        "ssl_keyfile": str(files.key),
        "ssl_certfile": str(files.cert),
        "ssl_cert_reqs": ssl.CERT_OPTIONAL,
        "ssl_ca_certs": str(files.client_ca),
        "http": PeerCertProtocol,
        "log_level": log_level,
        "access_log": log_level in ("info", "debug", "trace"),
        "timeout_keep_alive": 30,
        "loop": "auto",  # uvloop when installed
    }
    if sockets:
        uvicorn.Server(uvicorn.Config(_APP, **options)).run(sockets=sockets)
    else:
        uvicorn.run(_APP, host=host, port=port, workers=workers, **options)
