"""Write combining (pyxs._outbox), driven by scripts: no thread, no
socket. The writer's writes are the batches the outbox hands out."""

from typing import List

from hypothesis import given
from hypothesis import strategies as st

from pyxs._outbox import Outbox


def test_a_lone_request_is_written_by_its_caller():
    box = Outbox()
    assert box.claim(b"a") == b"a"
    assert box.writing
    assert box.next_batch() is None
    assert not box.writing


def test_invariant_1_one_writer_the_others_ride_along():
    box = Outbox()
    assert box.claim(b"a") == b"a"
    assert box.claim(b"b") is None  # a writer is busy: b waits for it
    assert box.claim(b"c") is None
    assert box.writing
    assert box.next_batch() == b"bc"  # one write for both
    assert box.writing  # still the writer: it writes them
    assert box.next_batch() is None
    assert not box.writing
    assert box.claim(b"d") == b"d"  # the next caller writes for itself


def test_invariant_2_batches_keep_the_claim_order():
    box = Outbox()
    box.claim(b"first")
    for item in (b"1", b"2", b"3"):
        box.claim(item)
    assert box.next_batch() == b"123"
    box.claim(b"4")  # claimed during the write of 123
    assert box.next_batch() == b"4"
    assert box.next_batch() is None


def test_a_single_queued_request_is_handed_out_as_is():
    box = Outbox()
    box.claim(b"a")
    queued = b"the one request"
    box.claim(queued)
    assert box.next_batch() is queued  # no copy


def test_invariant_3_once_closed_nothing_more_is_handed_out():
    # The router closed while a write was under way: the writer stops and
    # nobody becomes a writer for the queued bytes (their slots are failed
    # by the pending table instead).
    box = Outbox()
    box.claim(b"a")
    box.claim(b"b")
    box.closed = True
    assert box.next_batch() is None
    assert not box.writing


def test_abort_with_nobody_behind_keeps_the_stream():
    box = Outbox()
    box.claim(b"a")
    assert box.abort() is False
    assert not box.writing
    assert box.claim(b"b") == b"b"


def test_abort_with_requests_behind_says_they_are_stranded():
    box = Outbox()
    box.claim(b"a")
    box.claim(b"b")
    assert box.abort() is True
    assert not box.writing and box.queued == []
    # Nothing left for a later writer: b is not written after a's failure.
    assert box.claim(b"c") == b"c"
    assert box.next_batch() is None


@given(st.lists(st.tuples(st.sampled_from(["claim", "write"]),
                          st.binary(min_size=1, max_size=4)),
                max_size=30))
def test_every_claimed_request_is_written_once_in_order(script):
    # Any interleaving of claims and finished writes: the bytes the
    # writers write are the claims, in claim order, each once.
    box = Outbox()
    claimed: List[bytes] = []
    written: List[bytes] = []
    for action, data in script:
        if action == "claim":
            claimed.append(data)
            own = box.claim(data)
            if own is not None:
                assert own is data
                written.append(own)
        elif box.writing:
            batch = box.next_batch()
            if batch is not None:
                written.append(batch)
            assert box.writing == (batch is not None)
    while box.writing:  # the writer finishes
        batch = box.next_batch()
        if batch is not None:
            written.append(batch)
    assert b"".join(written) == b"".join(claimed)
    assert box.queued == []
