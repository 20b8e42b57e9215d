"""Plain HTTP on a server connection (lws ``roles/h1`` server side): requests and answers.

A request head becomes FILTER_HTTP_CONNECTION then HTTP on protocol 0 (403 when the
filter refuses, 404 when the callback answers nothing); the answer is one
``http_response`` or a ``serve_file``, whose HTTP decisions (HEAD, 304, Range, 301,
405, types) come from :mod:`lwsbridge.fileserve` and whose file is streamed by the
service as the socket drains.  Between requests of a keep-alive connection the
keep-alive timeout runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lwsbridge.connection import Connection
from lwsbridge.core.events import HTTPRequest
from lwsbridge.core.state import State
from lwsbridge.fileserve import FileServer, plan_response
from lwsbridge.lifecycle import TimerKind
from lwsbridge.vocabulary import Reason

if TYPE_CHECKING:
    from lwsbridge.context import Context
    from lwsbridge.service import Service

__all__ = ["HttpServing"]

#: the request fields a file answer depends on
_CONDITIONS = ("if-none-match", "if-modified-since", "range", "if-range")


class HttpServing:
    __slots__ = ("_ctx", "_files", "_svc")

    def __init__(self, context: Context, service: Service, files: FileServer) -> None:
        self._ctx = context  # its configuration: protocols, keepalive_timeout
        self._svc = service
        self._files = files

    def request(self, conn: Connection, ev: HTTPRequest) -> None:
        """A plain HTTP request head arrived on ``conn``: ask protocol 0 for the answer."""
        svc = self._svc
        svc.timers.schedule(conn, TimerKind.PROTOCOL, None)
        conn.handshake_headers = ev.headers
        conn.http_method = ev.method
        conn.responded = False
        p0 = self._ctx.protocols[0]
        if svc.call(conn, p0, Reason.FILTER_HTTP_CONNECTION, ev.target):
            self.respond(conn, 403, "<h1>403 Forbidden</h1>")
        else:
            if svc.call(conn, p0, Reason.HTTP, ev.target):
                svc.kill(conn, "closed by HTTP callback")
                return
            if not conn.responded and conn.alive:
                self.respond(conn, 404, "<h1>404 Not Found</h1>")
        conn.handshake_headers = None
        conn.http_method = None
        if conn.alive and conn.core.state is State.HTTP_HEAD:
            svc.timers.schedule(conn, TimerKind.PROTOCOL, self._ctx.keepalive_timeout)

    def respond(
        self,
        conn: Connection,
        status: int,
        body: bytes | str = b"",
        content_type: str = "text/html; charset=utf-8",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """The whole answer at once."""
        data = body.encode("utf-8") if isinstance(body, str) else body
        conn.responded = True
        conn.core.send_http_response(status, [("Content-Type", content_type), *headers], data)
        self._svc.queue_output(conn)

    def serve_file(
        self,
        conn: Connection,
        path: str,
        content_type: str | None,
        headers: Sequence[tuple[str, str]],
    ) -> bool:
        """A file under the root as the answer (see Context.serve_file)."""
        conn.responded = True
        found = self._files.lookup(path)
        request = conn.handshake_headers
        wanted: dict[str, str] = {}
        if request is not None:
            for name in _CONDITIONS:
                value = request.get(name)
                if value is not None:
                    wanted[name] = value.decode("latin-1")
        plan = plan_response(conn.http_method or "GET", wanted, found, content_type)
        stream = found.stream
        fields = (
            plan.headers
            if plan.status in (200, 206, 304)
            else [("Content-Type", "text/html; charset=utf-8"), *plan.headers]
        )
        svc = self._svc
        if plan.part is None:
            if stream is not None:
                stream.close()
            conn.core.send_http_response(plan.status, [*fields, *headers], plan.body)
            svc.queue_output(conn)
            return plan.status in (200, 206, 304)
        assert stream is not None
        stream.select(*plan.part)
        conn.core.send_http_response(plan.status, [*fields, *headers], end=False)
        conn.file = stream
        svc.queue_output(conn)
        if conn.alive:
            svc.file_more(conn)
        return True
