"""The pending table and the reply check (pyxs._pending), driven by
scripts: no thread, no socket. Each test names the invariant of the
module docstring it holds to.

The id space is 2**32 - 1 ids wide, too wide to go round in a test, so the
wrap-around tests shrink it: ``small_ids`` sets the module's public
``RQ_ID_LIMIT`` (which ``add`` reads on every call) to a few ids. The
table's code runs unchanged; only the size of the space differs.
"""

from typing import Dict, Iterator, List, Optional, Tuple

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import pyxs._pending as pending_module
from pyxs._internal import Op, Packet
from pyxs._pending import (
    ABANDONED_LIMIT,
    RQ_ID_LIMIT,
    PendingTable,
    check_reply,
)
from pyxs.exceptions import UnexpectedPacket


class Slot:
    """A reply slot: any object the driver can tell apart."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return "Slot(%s)" % self.name


def reply(op: int, rq_id: int, tx_id: int = 0,
          payload: bytes = b"OK\0") -> Packet:
    return Packet(op, payload, rq_id, tx_id)


@pytest.fixture
def small_ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Request ids 1 .. 7: the space goes round after seven requests."""
    monkeypatch.setattr(pending_module, "RQ_ID_LIMIT", 8)
    yield 8


# -- invariant 1: ids are 1 .. 2**32 - 1, never 0 -----------------------------

def test_the_id_space_is_the_wire_s_uint32():
    assert RQ_ID_LIMIT == 2 ** 32


def test_ids_start_at_one_and_count_up():
    table: PendingTable[Slot] = PendingTable()
    assert [table.add(Slot(str(i)), Op.READ, 0) for i in range(5)] == \
        [1, 2, 3, 4, 5]
    assert len(table) == 5


def test_ids_wrap_to_one_never_zero(small_ids):
    table: PendingTable[Slot] = PendingTable()
    ids = []
    for i in range(3 * (small_ids - 1)):  # round the space three times
        rq_id = table.add(Slot(str(i)), Op.READ, 0)
        ids.append(rq_id)
        assert table.match(reply(Op.READ, rq_id)) != (None, None)
    assert ids == [1, 2, 3, 4, 5, 6, 7] * 3
    assert 0 not in ids and len(table) == 0


# -- invariant 2: allocation skips every id still in the table ----------------

def test_wrap_skips_ids_in_flight(small_ids):
    table: PendingTable[Slot] = PendingTable()
    slots = [Slot(str(i)) for i in range(7)]
    ids = [table.add(slot, Op.READ, 0) for slot in slots[:3]]  # 1 2 3
    assert ids == [1, 2, 3]
    for slot in slots[3:7]:  # 4 5 6 7, answered at once
        rq_id = table.add(slot, Op.READ, 0)
        assert table.match(reply(Op.READ, rq_id))[0] is slot
    # 1 and 3 are still in flight, 2 was answered: after the wrap the
    # table skips 1 and hands out 2, then skips 3 and hands out 4.
    assert table.match(reply(Op.READ, 2))[0] is slots[1]
    late = Slot("late")
    assert table.add(late, Op.READ, 0) == 2
    assert table.add(Slot("next"), Op.READ, 0) == 4
    # The reply for id 1 still reaches the request that owns id 1.
    assert table.match(reply(Op.READ, 1))[0] is slots[0]


def test_skipping_the_last_id_wraps_to_one_not_zero(small_ids):
    table: PendingTable[Slot] = PendingTable()
    top = Slot("top")
    for i in range(small_ids - 2):  # ids 1 .. 6, answered
        table.match(reply(Op.READ, table.add(Slot(str(i)), Op.READ, 0)))
    assert table.add(top, Op.READ, 0) == small_ids - 1  # 7, in flight
    for i in range(small_ids - 2):  # round two: 1 .. 6 again
        table.match(reply(Op.READ, table.add(Slot(str(i)), Op.READ, 0)))
    # Next comes 7, still in flight: the skip itself must wrap to 1.
    assert table.add(Slot("after"), Op.READ, 0) == 1


def test_wrap_skips_abandoned_ids(small_ids):
    table: PendingTable[Slot] = PendingTable()
    old = Slot("old")
    old_id = table.add(old, Op.READ, 0)
    table.abandon(old_id, old)
    for i in range(small_ids - 2):  # ids 2 .. 7
        rq_id = table.add(Slot(str(i)), Op.READ, 0)
        table.match(reply(Op.READ, rq_id))
    # Round again: id 1 is abandoned but in the table, so it is skipped;
    # its late reply cannot reach the newer request.
    newer = Slot("newer")
    newer_id = table.add(newer, Op.READ, 0)
    assert newer_id == 2
    assert table.match(reply(Op.READ, old_id)) == (None, None)
    assert table.match(reply(Op.READ, newer_id)) == (newer, None)


# -- invariant 3: an entry leaves only through match or fail_all --------------

def test_a_slot_gets_at_most_one_reply():
    table: PendingTable[Slot] = PendingTable()
    slot = Slot("a")
    rq_id = table.add(slot, Op.READ, 0)
    assert table.match(reply(Op.READ, rq_id, payload=b"v")) == (slot, None)
    assert len(table) == 0
    again, error = table.match(reply(Op.READ, rq_id, payload=b"v"))
    assert again is None
    assert isinstance(error, UnexpectedPacket)
    assert "unknown request id %d" % rq_id in str(error)


def test_a_wrong_reply_takes_its_entry_and_says_why():
    table: PendingTable[Slot] = PendingTable()
    slot = Slot("a")
    rq_id = table.add(slot, Op.READ, 3)
    got, error = table.match(reply(Op.WRITE, rq_id, 3))
    assert got is slot and isinstance(error, UnexpectedPacket)
    assert "READ request got a WRITE reply" in str(error)
    assert len(table) == 0  # the slot is failed once, not again later


def test_abandon_keeps_the_entry():
    table: PendingTable[Slot] = PendingTable()
    slot = Slot("a")
    rq_id = table.add(slot, Op.READ, 0)
    assert table.abandon(rq_id, slot) is False
    assert len(table) == 1 and table.abandoned == 1


def test_fail_all_hands_back_the_waiting_slots_oldest_first():
    table: PendingTable[Slot] = PendingTable()
    slots = [Slot(str(i)) for i in range(4)]
    ids = [table.add(slot, Op.READ, 0) for slot in slots]
    table.abandon(ids[1], slots[1])
    assert table.fail_all() == [slots[0], slots[2], slots[3]]
    assert len(table) == 0 and table.abandoned == 0
    # Replies arriving after the end belong to nobody.
    assert table.match(reply(Op.READ, ids[0]))[0] is None
    assert table.fail_all() == []


# -- invariant 4: abandoned entries, and their bound --------------------------

def test_a_late_reply_of_an_abandoned_request_is_dropped_quietly():
    table: PendingTable[Slot] = PendingTable()
    slot = Slot("a")
    rq_id = table.add(slot, Op.READ, 0)
    table.abandon(rq_id, slot)
    assert table.match(reply(Op.READ, rq_id)) == (None, None)
    assert len(table) == 0 and table.abandoned == 0


def test_abandon_past_the_limit_says_the_connection_is_broken():
    table: PendingTable[Slot] = PendingTable(abandoned_limit=3)
    answers = []
    for i in range(5):
        slot = Slot(str(i))
        answers.append(table.abandon(table.add(slot, Op.READ, 0), slot))
    assert answers == [False, False, False, True, True]
    assert table.abandoned == 5


def test_late_replies_bring_the_count_back_under_the_limit():
    table: PendingTable[Slot] = PendingTable(abandoned_limit=1)
    first, second, third = Slot("1"), Slot("2"), Slot("3")
    first_id = table.add(first, Op.READ, 0)
    table.abandon(first_id, first)
    table.match(reply(Op.READ, first_id))  # the late reply came
    second_id = table.add(second, Op.READ, 0)
    assert table.abandon(second_id, second) is False
    third_id = table.add(third, Op.READ, 0)
    assert table.abandon(third_id, third) is True


def test_the_default_limit():
    table: PendingTable[Slot] = PendingTable()
    assert table.abandoned_limit == ABANDONED_LIMIT == 1024


def test_abandon_counts_each_request_once():
    table: PendingTable[Slot] = PendingTable(abandoned_limit=1)
    slot = Slot("a")
    rq_id = table.add(slot, Op.READ, 0)
    assert table.abandon(rq_id, slot) is False
    # A second abandon (a timeout, then Ctrl-C in the clean-up) is a
    # no-op: the slot is gone from the entry already.
    assert table.abandon(rq_id, slot) is False
    assert table.abandoned == 1


def test_abandon_after_the_reply_came_is_a_no_op():
    # The holder matched the reply while its caller timed out.
    table: PendingTable[Slot] = PendingTable()
    slot = Slot("a")
    rq_id = table.add(slot, Op.READ, 0)
    assert table.match(reply(Op.READ, rq_id))[0] is slot
    assert table.abandon(rq_id, slot) is False
    assert table.abandoned == 0 and len(table) == 0


def test_abandon_by_another_slot_does_not_touch_the_entry(small_ids):
    # A caller abandoning an id that was answered and then reused by a
    # newer request must not take the newer request's reply away.
    table: PendingTable[Slot] = PendingTable()
    stale = Slot("stale")
    rq_id = table.add(stale, Op.READ, 0)
    table.match(reply(Op.READ, rq_id))
    for i in range(small_ids - 2):
        table.match(reply(Op.READ, table.add(Slot(str(i)), Op.READ, 0)))
    newer = Slot("newer")
    assert table.add(newer, Op.READ, 0) == rq_id  # the id came round
    table.abandon(rq_id, stale)
    assert table.abandoned == 0
    assert table.match(reply(Op.READ, rq_id)) == (newer, None)


# -- the rq_id-0 quirk of old xenbus drivers ----------------------------------

def test_id_zero_watch_reply_answers_the_oldest_watch():
    table: PendingTable[Slot] = PendingTable()
    read, watch1, unwatch, watch2 = (Slot(n) for n in
                                     ("read", "w1", "uw", "w2"))
    table.add(read, Op.READ, 0)
    table.add(watch1, Op.WATCH, 0)
    table.add(unwatch, Op.UNWATCH, 0)
    table.add(watch2, Op.WATCH, 0)
    assert table.match(reply(Op.WATCH, 0)) == (watch1, None)
    assert table.match(reply(Op.WATCH, 0)) == (watch2, None)
    assert table.match(reply(Op.UNWATCH, 0)) == (unwatch, None)
    assert len(table) == 1  # the READ is no WATCH/UNWATCH: untouched


def test_id_zero_error_answers_the_oldest_watch_or_unwatch():
    table: PendingTable[Slot] = PendingTable()
    unwatch, watch = Slot("uw"), Slot("w")
    table.add(unwatch, Op.UNWATCH, 0)
    table.add(watch, Op.WATCH, 0)
    assert table.match(reply(Op.ERROR, 0, payload=b"ENOENT\0")) == \
        (unwatch, None)
    assert table.match(reply(Op.ERROR, 0, payload=b"EINVAL\0")) == \
        (watch, None)


def test_id_zero_for_other_ops_is_unknown():
    table: PendingTable[Slot] = PendingTable()
    table.add(Slot("read"), Op.READ, 0)
    table.add(Slot("watch"), Op.WATCH, 0)
    slot, error = table.match(reply(Op.READ, 0, payload=b"v"))
    assert slot is None and isinstance(error, UnexpectedPacket)
    assert "READ reply for unknown request id 0" in str(error)
    # An UNWATCH reply does not answer a WATCH.
    slot, error = table.match(reply(Op.UNWATCH, 0))
    assert slot is None and error is not None
    assert len(table) == 2


def test_id_zero_reply_of_an_abandoned_watch_is_dropped():
    table: PendingTable[Slot] = PendingTable()
    gone, waiting = Slot("gone"), Slot("waiting")
    gone_id = table.add(gone, Op.WATCH, 0)
    table.add(waiting, Op.WATCH, 0)
    table.abandon(gone_id, gone)
    assert table.match(reply(Op.WATCH, 0)) == (None, None)
    assert table.abandoned == 0
    assert table.match(reply(Op.WATCH, 0)) == (waiting, None)


def test_id_zero_reply_ignores_the_transaction():
    # Old xenbus drivers do not copy the header, so tx_id is 0 too.
    table: PendingTable[Slot] = PendingTable()
    watch = Slot("w")
    table.add(watch, Op.WATCH, 7)
    assert table.match(reply(Op.WATCH, 0, tx_id=0)) == (watch, None)


def test_the_quirk_does_not_apply_to_a_real_id():
    table: PendingTable[Slot] = PendingTable()
    watch = Slot("w")
    rq_id = table.add(watch, Op.WATCH, 7)
    got, error = table.match(reply(Op.WATCH, rq_id, tx_id=0))
    assert got is watch and error is not None
    assert "transaction 0, the request was in 7" in str(error)


# -- invariant 5: check_reply -------------------------------------------------

@pytest.mark.parametrize("op", [Op.READ, Op.WRITE, Op.WATCH, Op.DIRECTORY])
def test_check_reply_accepts_the_request_s_op_and_error(op):
    assert check_reply(op, 4, reply(op, 9, 4)) is None
    assert check_reply(op, 4, reply(Op.ERROR, 9, 4, b"EACCES\0")) is None


def test_check_reply_refuses_another_op():
    error = check_reply(Op.READ, 0, reply(Op.DIRECTORY, 9, 0))
    assert isinstance(error, UnexpectedPacket)
    assert str(error) == "READ request got a DIRECTORY reply"


def test_check_reply_refuses_another_transaction():
    error = check_reply(Op.WRITE, 3, reply(Op.WRITE, 9, 4))
    assert isinstance(error, UnexpectedPacket)
    assert "WRITE reply carries transaction 4, the request was in 3" in \
        str(error)
    # ERROR replies are held to the same transaction.
    assert check_reply(Op.WRITE, 3, reply(Op.ERROR, 9, 4)) is not None


def test_check_reply_lets_transaction_start_carry_any_transaction():
    # Daemons differ in what they put in a TRANSACTION_START reply.
    assert check_reply(Op.TRANSACTION_START, 0,
                       reply(Op.TRANSACTION_START, 9, 12, b"12\0")) is None


def test_match_and_check_reply_agree():
    # The table's fast path (op and tx equal) and check_reply give the
    # same verdicts.
    cases = [(Op.READ, 0, Op.READ, 0), (Op.READ, 0, Op.ERROR, 0),
             (Op.READ, 1, Op.READ, 2), (Op.READ, 0, Op.WRITE, 0),
             (Op.TRANSACTION_START, 0, Op.TRANSACTION_START, 5)]
    for sent_op, sent_tx, got_op, got_tx in cases:
        table: PendingTable[Slot] = PendingTable()
        slot = Slot("s")
        rq_id = table.add(slot, sent_op, sent_tx)
        got = reply(got_op, rq_id, got_tx)
        _, error = table.match(got)
        expected = check_reply(sent_op, sent_tx, got)
        assert (error is None) == (expected is None), (sent_op, got_op)


# -- the table against a model ------------------------------------------------

QUIRK_OPS = (int(Op.WATCH), int(Op.UNWATCH))
OPS = st.sampled_from([int(Op.READ), int(Op.WRITE), int(Op.WATCH),
                       int(Op.UNWATCH), int(Op.TRANSACTION_START)])
LIMIT = 8  # ids 1 .. 7 in the machine, so that it goes round often
ABANDON_LIMIT = 3


class PendingMachine(RuleBasedStateMachine):
    """The table, next to a model: a dict of requests in add order, each
    ``[slot or None, op, tx]``, and the last id handed out."""

    def __init__(self) -> None:
        super().__init__()
        self.saved_limit = pending_module.RQ_ID_LIMIT
        pending_module.RQ_ID_LIMIT = LIMIT
        self.table: PendingTable[Slot] = PendingTable(ABANDON_LIMIT)
        self.model: Dict[int, List[object]] = {}
        self.last = 0
        self.names = 0

    def teardown(self) -> None:
        pending_module.RQ_ID_LIMIT = self.saved_limit

    @initialize()
    def start(self) -> None:
        assert len(self.table) == 0

    def _expected_id(self) -> int:
        """Round the space from the last id, skipping ids in flight."""
        rq_id = self.last
        while True:
            rq_id = rq_id % (LIMIT - 1) + 1
            if rq_id not in self.model:
                return rq_id

    @precondition(lambda self: len(self.model) < LIMIT - 2)
    @rule(op=OPS, tx=st.integers(0, 2))
    def add(self, op: int, tx: int) -> None:
        self.names += 1
        slot = Slot(str(self.names))
        expected = self._expected_id()
        rq_id = self.table.add(slot, op, tx)
        assert rq_id == expected
        self.model[rq_id] = [slot, op, tx]
        self.last = rq_id

    def _waiting(self) -> List[int]:
        return [i for i, (slot, _, _) in self.model.items() if slot]

    @precondition(lambda self: self.model)
    @rule(data=st.data(), wrong_op=st.booleans(), wrong_tx=st.booleans())
    def reply(self, data: st.DataObject, wrong_op: bool,
              wrong_tx: bool) -> None:
        rq_id = data.draw(st.sampled_from(sorted(self.model)))
        slot, op, tx = self.model.pop(rq_id)
        got_op = int(Op.DIRECTORY) if wrong_op else op
        got_tx = tx + 1 if wrong_tx else tx
        got, error = self.table.match(reply(got_op, rq_id, got_tx))
        assert got is slot
        if slot is None:
            assert error is None  # late replies are dropped quietly
        else:
            bad = wrong_op or (wrong_tx and op != Op.TRANSACTION_START)
            assert (error is not None) == bad

    @rule(op=st.sampled_from([int(Op.WATCH), int(Op.UNWATCH),
                              int(Op.ERROR), int(Op.READ)]))
    def quirk_reply(self, op: int) -> None:
        oldest: Optional[Tuple[int, List[object]]] = None
        if op in QUIRK_OPS or op == Op.ERROR:
            for rq_id, entry in self.model.items():
                if entry[1] in QUIRK_OPS and (op == Op.ERROR or
                                              entry[1] == op):
                    oldest = rq_id, entry
                    break
        got, error = self.table.match(reply(op, 0))
        if oldest is None:
            assert got is None and error is not None
            return
        del self.model[oldest[0]]
        assert got is oldest[1][0] and error is None

    @rule(rq_id=st.integers(1, LIMIT - 1))
    def unknown_reply(self, rq_id: int) -> None:
        if rq_id in self.model:
            return
        assert self.table.match(reply(Op.READ, rq_id))[0] is None

    @precondition(lambda self: any(s for s, _, _ in self.model.values()))
    @rule(data=st.data())
    def abandon(self, data: st.DataObject) -> None:
        rq_id = data.draw(st.sampled_from(self._waiting()))
        slot = self.model[rq_id][0]
        self.model[rq_id][0] = None
        broken = self.table.abandon(rq_id, slot)
        assert broken == (self._abandoned() > ABANDON_LIMIT)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def abandon_by_a_stranger(self, data: st.DataObject) -> None:
        rq_id = data.draw(st.sampled_from(sorted(self.model)))
        self.table.abandon(rq_id, Slot("stranger"))  # changes nothing

    @rule()
    def fail_all(self) -> None:
        waiting = [slot for slot, _, _ in self.model.values() if slot]
        assert self.table.fail_all() == waiting
        self.model.clear()

    def _abandoned(self) -> int:
        return sum(1 for slot, _, _ in self.model.values() if slot is None)

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert len(self.table) == len(self.model)
        assert self.table.abandoned == self._abandoned()
        assert 0 not in self.model


PendingMachine.TestCase.settings = settings(max_examples=40,
                                            stateful_step_count=25,
                                            deadline=None)
test_pending_table_against_a_model = PendingMachine.TestCase
