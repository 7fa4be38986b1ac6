"""The reading role (pyxs._role), driven by scripts: no thread, no
socket. One test per row of the transition table of the module docstring,
then the invariants, then the interleavings that once hung the Ctrl-C
tests, then the role against a model, every invariant checked after every
step.

Callers are plain strings here: the role only stores and compares them.
"""

from typing import Dict, List, Optional, Union

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from pyxs._role import (
    FOLLOW,
    LEAD,
    SERVE,
    SLEEP,
    SOON,
    THREAD,
    WAKE_THREAD,
    ReadingRole,
)


def held_by(holder: str, *followers: str) -> "ReadingRole[str]":
    """A role held by caller ``holder``, with ``followers`` waiting."""
    role: ReadingRole[str] = ReadingRole()
    assert role.arrive(holder) is LEAD
    for follower in followers:
        assert role.arrive(follower) is FOLLOW
    return role


def held_by_thread(*followers: str) -> "ReadingRole[str]":
    role: ReadingRole[str] = ReadingRole()
    assert role.thread_take() is True
    for follower in followers:
        assert role.arrive(follower) is WAKE_THREAD
    return role


def waiting(role: "ReadingRole[str]") -> List[str]:
    return list(role.followers)


# -- the transition table, row by row -----------------------------------------

def test_row_arrive_on_a_free_role_leads():
    role: ReadingRole[str] = ReadingRole()
    assert role.arrive("c") is LEAD
    assert role.holder == "c" and waiting(role) == [] and role.reads == 1


def test_row_arrive_behind_a_caller_follows():
    role = held_by("c1")
    assert role.arrive("c") is FOLLOW
    assert role.holder == "c1" and waiting(role) == ["c"]
    assert role.reads == 1  # only taking the role counts


def test_row_arrive_behind_the_thread_wakes_it():
    role = held_by_thread("f")
    assert role.arrive("c") is WAKE_THREAD
    assert role.holder is THREAD and waiting(role) == ["f", "c"]


def test_row_completed_removes_the_follower():
    role = held_by("c", "f", "g")
    role.completed("f")  # its reply is in: it is DONE, not next
    assert role.holder == "c" and waiting(role) == ["g"]


def test_row_a_follower_gives_up():
    role = held_by("h", "f", "g")
    assert role.give_up("f") is False
    assert role.holder == "h" and waiting(role) == ["g"]


def test_row_a_follower_gives_up_behind_the_thread():
    role = held_by_thread("f")
    assert role.give_up("f") is False
    assert role.holder is THREAD and waiting(role) == []


def test_row_a_promoted_follower_gives_up():
    role = held_by("h", "f")
    assert role.release() == ("f", False)
    # Interrupted before it noticed the promotion: it holds the role.
    assert role.give_up("f") is True
    assert role.holder == "f"  # until it releases


def test_row_release_promotes_the_oldest_follower():
    role = held_by("h", "f", "g", "k")
    assert role.release() == ("f", False)
    assert role.holder == "f" and waiting(role) == ["g", "k"]


def test_row_release_hands_the_role_to_a_waiting_thread():
    role = held_by("h")
    assert role.thread_take() is False
    assert role.release() == (None, True)
    assert role.holder is THREAD


def test_row_release_frees_the_role():
    role = held_by("h")
    assert role.release() == (None, False)
    assert role.holder is None


def test_row_release_wakes_a_thread_that_waits_for_free():
    role = held_by("h")
    assert role.thread_look(role.reads) == (SLEEP, 1)
    assert role.thread_wants_free
    assert role.release() == (None, True)
    assert role.holder is None and not role.thread_wants_free
    # Told once: the next release does not wake it again.
    role.arrive("c")
    assert role.release() == (None, False)


def test_row_thread_takes_a_free_role():
    role: ReadingRole[str] = ReadingRole()
    assert role.thread_take() is True
    assert role.holder is THREAD and not role.thread_wants


def test_row_thread_waits_behind_a_caller():
    role = held_by("c", "f")
    assert role.thread_take() is False
    assert role.holder == "c" and waiting(role) == ["f"]
    assert role.thread_wants


def test_thread_take_while_it_holds_the_role_confirms_it():
    # release() handed it the role and woke it: it takes it for good.
    role = held_by("h")
    role.thread_take()
    role.release()
    assert role.thread_take() is True
    assert role.holder is THREAD and not role.thread_wants


# -- thread_look: when the idle thread reads for the monitors -----------------

def test_thread_look_first_time_looks_again_soon():
    role: ReadingRole[str] = ReadingRole()
    assert role.thread_look(None) == (SOON, 0)
    assert role.holder is None


def test_thread_look_serves_once_callers_were_quiet():
    role: ReadingRole[str] = ReadingRole()
    decision, seen = role.thread_look(None)
    assert role.thread_look(seen) == (SERVE, 0)
    assert role.holder is THREAD


def test_thread_look_waits_while_callers_keep_reading():
    role: ReadingRole[str] = ReadingRole()
    _, seen = role.thread_look(None)
    role.arrive("c")
    role.release()  # a caller read since the last look
    assert role.thread_look(seen) == (SOON, 1)
    assert role.holder is None


def test_thread_look_sleeps_while_one_caller_holds_the_role():
    role = held_by("c")
    _, seen = role.thread_look(None)
    assert role.thread_look(seen) == (SLEEP, 1)
    assert role.holder == "c" and role.thread_wants_free


def test_thread_look_while_the_thread_holds_it_changes_nothing():
    role = held_by_thread()
    _, seen = role.thread_look(None)
    assert role.thread_look(seen) == (SOON, 0)
    assert role.holder is THREAD and not role.thread_wants_free


# -- invariants ---------------------------------------------------------------

def test_invariant_1_the_holder_is_never_a_follower():
    role = held_by("h", "f", "g")
    role.release()
    assert role.holder not in role.followers
    role.release()
    assert role.holder == "g" and waiting(role) == []


def test_invariant_2_a_completed_follower_is_never_promoted():
    role = held_by("h", "f", "g")
    role.completed("f")
    assert role.release() == ("g", False)
    assert role.release() == (None, False)  # f is not handed the role


def test_invariant_3_a_promoted_follower_is_not_completed_by_others():
    # Once promoted, f is the holder: only it reads, so the old holder
    # cannot complete it; completed() on a holder would be a driver bug,
    # and the role does not make it a follower again.
    role = held_by("h", "f")
    role.release()
    role.completed("f")
    assert role.holder == "f" and waiting(role) == []


def test_invariant_4_once_closed_the_thread_goes_before_followers():
    role = held_by("h", "f", "g")
    role.closed = True
    assert role.thread_take() is False
    assert role.release() == (None, True)
    assert role.holder is THREAD
    assert role.thread_take() is True
    # The followers are still waiting: shutdown fails them (the pending
    # table's fail_all), it does not hand them the role.
    assert waiting(role) == ["f", "g"]


def test_while_open_followers_go_before_the_thread():
    role = held_by("h", "f")
    assert role.thread_take() is False
    assert role.release() == ("f", False)
    assert role.thread_wants  # still next, once f is done
    assert role.release() == (None, True)
    assert role.holder is THREAD


# -- the interleavings that once hung the Ctrl-C tests ------------------------

def test_follower_interrupted_while_being_promoted():
    # h releases and promotes f, but Ctrl-C lands in f before it sees
    # the promotion. give_up says so; f must release, and the role moves
    # on to g instead of staying with a caller that is gone.
    role = held_by("h", "f", "g")
    assert role.release() == ("f", False)
    assert role.give_up("f") is True
    assert role.release() == ("g", False)
    assert role.holder == "g" and waiting(role) == []
    assert role.release() == (None, False)
    assert role.holder is None


def test_follower_interrupted_while_being_promoted_with_nobody_after():
    role = held_by("h", "f")
    role.release()
    assert role.give_up("f") is True
    assert role.release() == (None, False)
    assert role.arrive("new") is LEAD  # not stuck with the gone follower


def test_follower_whose_reply_completes_as_it_gives_up():
    # The holder completes f's reply (without the lock) just before f
    # gives up: f is not promoted later, and give_up says it holds
    # nothing.
    role = held_by("h", "f", "g")
    role.completed("f")
    assert role.give_up("f") is False
    assert role.release() == ("g", False)


def test_follower_gives_up_just_before_its_reply_completes():
    # The other order: f leaves, then its (abandoned) reply is handled.
    role = held_by("h", "f", "g")
    assert role.give_up("f") is False
    role.completed("f")  # a no-op
    assert waiting(role) == ["g"]
    assert role.release() == ("g", False)


def test_shutdown_while_followers_wait_and_the_thread_wants_the_role():
    # The router closes while h reads, f and g wait: the thread asks for
    # the role to fail everybody. h leaves (it sees the closing signal):
    # the thread must get the role, or shutdown waits for f and g, who
    # wait for shutdown.
    role = held_by("h", "f", "g")
    role.closed = True
    assert role.thread_take() is False
    assert role.release() == (None, True)
    assert role.thread_take() is True
    # A follower that gives up meanwhile (Ctrl-C) holds nothing.
    assert role.give_up("f") is False


def test_shutdown_with_a_promoted_follower_reading():
    # Closed after f was promoted: f sees the closing signal, releases,
    # and the thread comes next even though g waits.
    role = held_by("h", "f", "g")
    role.release()
    role.closed = True
    assert role.thread_take() is False
    assert role.release() == (None, True)
    assert role.holder is THREAD and waiting(role) == ["g"]


def test_caller_arriving_while_the_thread_serves_is_handed_the_role():
    # With watches, the thread reads for the monitors; a caller arrives
    # (WAKE_THREAD: the driver wakes the thread), the thread sees a
    # follower and leaves: the caller reads for itself.
    role: ReadingRole[str] = ReadingRole()
    _, seen = role.thread_look(None)
    assert role.thread_look(seen)[0] is SERVE
    assert role.arrive("c") is WAKE_THREAD
    assert role.followers
    assert role.release() == ("c", False)
    assert role.holder == "c"


# -- the role against a model ------------------------------------------------

Holder = Union[None, str, object]


class RoleMachine(RuleBasedStateMachine):
    """Drives the role as the router does and checks it against a model.

    The model: who holds the role, the followers in arrival order, and,
    for every caller, how often it was woken since it arrived (by
    completed: DONE, or by release: READER). A caller is woken at most
    once per wait; nobody waits while the role is free.
    """

    def __init__(self) -> None:
        super().__init__()
        self.role: ReadingRole[str] = ReadingRole()
        self.holder: Holder = None
        self.followers: List[str] = []
        self.woken: Dict[str, int] = {}
        self.promoted: Optional[str] = None  # woken READER, not yet aware
        self.thread_wants = False
        self.wants_free = False  # the thread sleeps until a release
        self.closed = False
        self.count = 0
        self.reads = 0

    # callers

    @rule()
    def arrive(self) -> None:
        self.count += 1
        caller = "c%d" % self.count
        answer = self.role.arrive(caller)
        self.woken[caller] = 0
        if self.holder is None:
            assert answer is LEAD
            self.holder = caller
            self.reads += 1
        else:
            assert answer is (WAKE_THREAD if self.holder is THREAD
                              else FOLLOW)
            self.followers.append(caller)

    @precondition(lambda self: self.followers and self.holder is not None)
    @rule(data=st.data())
    def holder_completes_a_follower(self, data: st.DataObject) -> None:
        follower = data.draw(st.sampled_from(self.followers))
        self.role.completed(follower)
        self.followers.remove(follower)
        self.woken[follower] += 1  # DONE

    @precondition(lambda self: self.woken)
    @rule(data=st.data())
    def complete_a_reply_nobody_waits_for(self, data: st.DataObject) -> None:
        # The reply of a caller that left, or was done already.
        caller = data.draw(st.sampled_from(sorted(self.woken)))
        if caller in self.followers or caller == self.holder:
            return
        self.role.completed(caller)

    @precondition(lambda self: self.followers)
    @rule(data=st.data())
    def follower_gives_up(self, data: st.DataObject) -> None:
        follower = data.draw(st.sampled_from(self.followers))
        assert self.role.give_up(follower) is False
        self.followers.remove(follower)
        del self.woken[follower]

    @precondition(lambda self: self.promoted is not None)
    @rule()
    def promoted_follower_gives_up(self) -> None:
        promoted = self.promoted
        assert promoted is not None
        assert self.role.give_up(promoted) is True
        self.promoted = None
        self._release()

    @precondition(lambda self: isinstance(self.holder, str))
    @rule()
    def holder_leaves(self) -> None:
        self.promoted = None
        self._release()

    # the router thread

    @precondition(lambda self: self.holder is THREAD)
    @rule()
    def thread_leaves(self) -> None:
        self._release()

    @precondition(lambda self: self.holder is not THREAD)
    @rule()
    def thread_take(self) -> None:
        got = self.role.thread_take()
        assert got == (self.holder is None)
        if got:
            self.holder = THREAD
            self.thread_wants = False
        else:
            self.thread_wants = True

    @precondition(lambda self: self.holder is THREAD and self.thread_wants)
    @rule()
    def thread_woken_takes(self) -> None:
        assert self.role.thread_take() is True
        self.thread_wants = False

    @precondition(lambda self: not self.thread_wants)
    @rule(quiet=st.booleans())
    def thread_look(self, quiet: bool) -> None:
        seen = self.role.reads if quiet else None
        decision, now = self.role.thread_look(seen)
        assert now == self.reads
        if not quiet:
            assert decision is SOON
        elif self.holder is None:
            assert decision is SERVE
            self.holder = THREAD
        elif self.holder is THREAD:
            assert decision is SOON
        else:
            assert decision is SLEEP
            self.wants_free = True

    @rule()
    def close(self) -> None:
        self.role.closed = self.closed = True

    def _release(self) -> None:
        successor, wake = self.role.release()
        if self.followers and not (self.closed and self.thread_wants):
            expected = self.followers.pop(0)
            assert successor == expected and wake is False
            self.woken[expected] += 1  # READER
            self.holder = self.promoted = expected
        elif self.thread_wants:
            assert successor is None and wake is True
            self.holder = THREAD
        else:
            assert successor is None and wake is self.wants_free
            self.wants_free = False
            self.holder = None

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.role.holder == self.holder
        assert waiting(self.role) == self.followers
        assert self.role.reads == self.reads

    @invariant()
    def holder_is_not_a_follower(self) -> None:
        assert self.role.holder not in self.role.followers

    @invariant()
    def nobody_waits_while_the_role_is_free(self) -> None:
        if self.role.holder is None:
            assert not self.role.followers

    @invariant()
    def woken_at_most_once(self) -> None:
        assert all(count <= 1 for count in self.woken.values())
        for follower in self.followers:
            assert self.woken[follower] == 0


RoleMachine.TestCase.settings = settings(max_examples=40,
                                         stateful_step_count=25,
                                         deadline=None)
test_reading_role_against_a_model = RoleMachine.TestCase


@pytest.mark.parametrize("closed", [False, True])
def test_the_thread_is_never_starved_by_followers_once_closed(closed):
    # However many followers arrive, a closed role reaches the thread at
    # the holder's next release; an open one serves the followers first.
    role = held_by("h", *("f%d" % i for i in range(5)))
    role.closed = closed
    role.thread_take()
    releases = 1
    while role.release()[0] is not None:
        releases += 1
    assert role.holder is THREAD
    assert releases == (1 if closed else 6)
