"""PollSet: the diff of wanted against watched interest, and the ADD/DEL the context makes."""

from __future__ import annotations

import pytest

from lwsbridge.core.pollset import POLLIN, POLLOUT, PollArgs, PollChange, PollKind, PollSet


def test_add_and_remove_args_are_add_and_remove_without_the_kind() -> None:
    ps = PollSet()
    assert ps.add_args(5, POLLIN) == PollArgs(5, POLLIN, 0)
    assert ps.add(6, POLLOUT) == PollChange(PollKind.ADD_POLL_FD, PollArgs(6, POLLOUT, 0))
    assert dict(ps.watched) == {5: POLLIN, 6: POLLOUT}
    with pytest.raises(ValueError, match="already in the poll set"):
        ps.add_args(5, POLLOUT)
    assert ps.watched[5] == POLLIN  # the refused add changed nothing
    assert ps.remove_args(5) == PollArgs(5, 0, POLLIN)
    assert ps.remove(6) == PollChange(PollKind.DEL_POLL_FD, PollArgs(6, 0, POLLOUT))
    assert len(ps) == 0
    with pytest.raises(KeyError):
        ps.remove_args(5)
