"""The connection state machine, written as one table of allowed transitions.

Theory of operation.  A connection starts in HTTP_HEAD (server: waiting for a request)
or IDLE (client: nothing sent yet).  A server turns a plain HTTP request into
HTTP_RESPONDING and back to HTTP_HEAD when a keep-alive response is complete; a
WebSocket upgrade request waits in UPGRADE_PENDING for the caller's accept or reject.
A client goes IDLE -> HTTP_HEAD on ``initiate`` and reads the 101 there.  OPEN is the
WebSocket proper.  Sending our close frame moves to LOCAL_CLOSING (RFC 6455 §7.1.2:
we may still receive, never send data).  Receiving the peer's close answers it at once
and ends in CLOSED, as does failing the connection (§7.1.7) or end of input.

Two rules: a transition missing from the table is never taken silently -- a caller
asking for it gets LocalProtocolError; and CLOSED is terminal.

Who closes the transport (the ``b""`` end-of-transport marker of ``data_to_send``).
Every entry into CLOSED emits exactly one :class:`~lwsbridge.core.events.Closed` event,
and emits the ``b""`` marker (once, as the last chunk) in every case but one:

* a server always emits it -- after a close handshake (RFC 6455 §7.1.1: "the server
  SHOULD close the underlying TCP connection first"), a rejected or plain HTTP exchange,
  a failure, end of input or ``abort()``;
* a client emits it when the connection ends any way other than a clean close handshake:
  failing the connection (§7.1.7), a bad handshake response, end of input, ``abort()``;
* a client whose close handshake completed (``Closed.clean`` is True: it received the
  server's close, answering it or answering ours) does *not*: per §7.1.1 it waits for
  the server to close TCP first, so that the server, not the client, holds TIME_WAIT.
  The wait must be bounded, and the core has no clock: the owner of the socket closes
  it when the peer's FIN arrives (``receive_eof`` is then a no-op) or after its own
  timeout (the Context arms ``close_timeout`` for it), whichever comes first.
"""

from __future__ import annotations

from enum import Enum

from lwsbridge.core.errors import LocalProtocolError

__all__ = ["TRANSITIONS", "Role", "State", "transition"]


class Role(Enum):
    SERVER = "server"
    CLIENT = "client"

    # Hashed on every transition (dict lookups): the identity hash is C, Enum's is Python.
    __hash__ = object.__hash__


class State(Enum):
    IDLE = "IDLE"
    HTTP_HEAD = "HTTP_HEAD"
    HTTP_RESPONDING = "HTTP_RESPONDING"
    UPGRADE_PENDING = "UPGRADE_PENDING"
    OPEN = "OPEN"
    LOCAL_CLOSING = "LOCAL_CLOSING"
    CLOSED = "CLOSED"

    # Hashed on every transition (dict lookups): the identity hash is C, Enum's is Python.
    __hash__ = object.__hash__


S, C = Role.SERVER, Role.CLIENT
_ANY_LIVE = (
    State.IDLE,
    State.HTTP_HEAD,
    State.HTTP_RESPONDING,
    State.UPGRADE_PENDING,
    State.OPEN,
    State.LOCAL_CLOSING,
)

# (role, state, trigger) -> next state.  Triggers named after what happened.
TRANSITIONS: dict[tuple[Role, State, str], State] = {
    # client handshake
    (C, State.IDLE, "initiate"): State.HTTP_HEAD,
    (C, State.HTTP_HEAD, "response_101"): State.OPEN,
    (C, State.HTTP_HEAD, "response_bad"): State.CLOSED,
    # server handshake and plain HTTP
    (S, State.HTTP_HEAD, "http_request"): State.HTTP_RESPONDING,
    (S, State.HTTP_RESPONDING, "response_keep_alive"): State.HTTP_HEAD,
    (S, State.HTTP_RESPONDING, "response_close"): State.CLOSED,
    (S, State.HTTP_HEAD, "upgrade_request"): State.UPGRADE_PENDING,
    (S, State.HTTP_HEAD, "bad_request"): State.CLOSED,
    (S, State.UPGRADE_PENDING, "accept"): State.OPEN,
    (S, State.UPGRADE_PENDING, "reject"): State.CLOSED,
    # WebSocket, both roles
    **{(r, State.OPEN, "send_close"): State.LOCAL_CLOSING for r in (S, C)},
    **{(r, State.OPEN, "recv_close"): State.CLOSED for r in (S, C)},
    **{(r, State.LOCAL_CLOSING, "recv_close"): State.CLOSED for r in (S, C)},
    # the way out from anywhere alive
    **{(r, s, "fail"): State.CLOSED for r in (S, C) for s in _ANY_LIVE},
    **{(r, s, "eof"): State.CLOSED for r in (S, C) for s in _ANY_LIVE},
    **{(r, s, "abort"): State.CLOSED for r in (S, C) for s in _ANY_LIVE},
}


def transition(role: Role, state: State, trigger: str) -> State:
    try:
        return TRANSITIONS[(role, state, trigger)]
    except KeyError:
        raise LocalProtocolError(
            f"cannot {trigger.replace('_', ' ')} in state {state.name} ({role.value})"
        ) from None
