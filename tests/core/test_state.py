"""The transition table: every entry is reachable, a missing one raises clearly."""

from __future__ import annotations

import pytest

from lwsbridge.core import LocalProtocolError, Role, State
from lwsbridge.core.state import TRANSITIONS, transition

TRIGGERS = sorted({t for (_, _, t) in TRANSITIONS})


@pytest.mark.parametrize(
    ("key", "target"),
    list(TRANSITIONS.items()),
    ids=[f"{r.value}-{s.name}-{t}" for r, s, t in TRANSITIONS],
)
def test_every_transition(key: tuple[Role, State, str], target: State) -> None:
    role, state, trigger = key
    assert transition(role, state, trigger) is target


def test_table_shape() -> None:
    # CLOSED is terminal: nothing leaves it.
    assert not [k for k in TRANSITIONS if k[1] is State.CLOSED]
    # Every live state can fail, hit EOF and be aborted, in both roles.
    for role in Role:
        for state in State:
            if state is State.CLOSED:
                continue
            for trig in ("fail", "eof", "abort"):
                assert TRANSITIONS[(role, state, trig)] is State.CLOSED
    expected = {
        (Role.CLIENT, State.IDLE, "initiate"): State.HTTP_HEAD,
        (Role.CLIENT, State.HTTP_HEAD, "response_101"): State.OPEN,
        (Role.CLIENT, State.HTTP_HEAD, "response_bad"): State.CLOSED,
        (Role.SERVER, State.HTTP_HEAD, "http_request"): State.HTTP_RESPONDING,
        (Role.SERVER, State.HTTP_RESPONDING, "response_keep_alive"): State.HTTP_HEAD,
        (Role.SERVER, State.HTTP_RESPONDING, "response_close"): State.CLOSED,
        (Role.SERVER, State.HTTP_HEAD, "upgrade_request"): State.UPGRADE_PENDING,
        (Role.SERVER, State.HTTP_HEAD, "bad_request"): State.CLOSED,
        (Role.SERVER, State.UPGRADE_PENDING, "accept"): State.OPEN,
        (Role.SERVER, State.UPGRADE_PENDING, "reject"): State.CLOSED,
    }
    for role in Role:
        expected[(role, State.OPEN, "send_close")] = State.LOCAL_CLOSING
        expected[(role, State.OPEN, "recv_close")] = State.CLOSED
        expected[(role, State.LOCAL_CLOSING, "recv_close")] = State.CLOSED
    for key, target in expected.items():
        assert TRANSITIONS[key] is target, key
    assert len(TRANSITIONS) == len(expected) + 3 * 2 * (len(State) - 1)


MISSING = [(r, s, t) for r in Role for s in State for t in TRIGGERS if (r, s, t) not in TRANSITIONS]


@pytest.mark.parametrize(
    ("role", "state", "trigger"), MISSING, ids=[f"{r.value}-{s.name}-{t}" for r, s, t in MISSING]
)
def test_missing_transition_raises(role: Role, state: State, trigger: str) -> None:
    with pytest.raises(LocalProtocolError) as info:
        transition(role, state, trigger)
    msg = str(info.value)
    assert trigger.replace("_", " ") in msg
    assert state.name in msg and role.value in msg


def test_missing_transition_message_example() -> None:
    with pytest.raises(LocalProtocolError, match=r"^cannot send close in state CLOSED \(server\)$"):
        transition(Role.SERVER, State.CLOSED, "send_close")
    with pytest.raises(LocalProtocolError, match="cannot accept in state IDLE"):
        transition(Role.CLIENT, State.IDLE, "accept")
    with pytest.raises(LocalProtocolError, match="cannot nonsense"):
        transition(Role.CLIENT, State.OPEN, "nonsense")
