"""TCP keepalive as lws sets it: SO_KEEPALIVE plus idle time, probe interval and count."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from lwsbridge.log import NOTICE, logger

__all__ = ["TCPKeepalive"]


@dataclass
class TCPKeepalive:
    """lws ``ka_time`` / ``ka_probes`` / ``ka_interval`` (seconds, count); 0 = off."""

    time: int = 0
    probes: int = 0
    interval: int = 0
    _warned: bool = field(default=False, repr=False)

    def apply(self, sock: socket.socket) -> None:
        if not self.time:
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        opts = [
            ("TCP_KEEPIDLE", self.time),
            ("TCP_KEEPINTVL", self.interval),
            ("TCP_KEEPCNT", self.probes),
        ]
        for name, value in opts:
            const = getattr(socket, name, None)
            if const is None:
                # As lws on BSD: only SO_KEEPALIVE, the system's timings apply.
                if not self._warned:
                    self._warned = True
                    logger.log(NOTICE, "TCP keepalive: %s not available here; system timing", name)
                continue
            if value:
                sock.setsockopt(socket.IPPROTO_TCP, const, value)
