"""Watch fan-out (pyxs._fanout), driven by scripts: no thread, no socket.
Subscribers are test doubles with the two methods of the Subscriber
protocol, as a Monitor has."""

import gc
from typing import List

from pyxs._fanout import Subscriber, WatchFanout
from pyxs._internal import Event
from pyxs.exceptions import ConnectionError, PyXSError
from pyxs.monitor import Monitor


class Recorder:
    """A subscriber that remembers what it was told."""

    def __init__(self) -> None:
        self.events: List[Event] = []
        self.lost: List[PyXSError] = []

    def deliver(self, event: Event) -> None:
        self.events.append(event)

    def connection_lost(self, error: PyXSError) -> None:
        self.lost.append(error)


def test_monitor_has_the_subscriber_methods():
    for name in ("deliver", "connection_lost"):
        assert callable(getattr(Monitor, name))
        assert callable(getattr(Subscriber, name))


def test_invariant_1_bool_is_some_watch_exists():
    fanout = WatchFanout()
    a, b = Recorder(), Recorder()
    assert not fanout
    assert fanout.subscribe(b"t", a) is True  # the first watch of all
    assert fanout
    assert fanout.subscribe(b"t", b) is False
    assert fanout.subscribe(b"u", a) is False
    assert fanout.tokens() == {b"t", b"u"}
    assert fanout.unsubscribe(b"t", a) is False
    assert fanout.tokens() == {b"t", b"u"}  # b still watches t
    assert fanout.unsubscribe(b"t", b) is False
    assert fanout.tokens() == {b"u"}  # t's last subscriber left: forgotten
    assert fanout.unsubscribe(b"u", a) is True  # no watch left
    assert not fanout and fanout.tokens() == frozenset()


def test_unsubscribe_of_what_was_never_watched_changes_nothing():
    fanout = WatchFanout()
    a, b = Recorder(), Recorder()
    assert fanout.unsubscribe(b"t", a) is True
    fanout.subscribe(b"t", a)
    assert fanout.unsubscribe(b"t", b) is False
    assert fanout.unsubscribe(b"other", a) is False
    assert fanout.route(Event(b"/p", b"t")) == (a,)


def test_route_by_token():
    fanout = WatchFanout()
    a, b, c = Recorder(), Recorder(), Recorder()
    fanout.subscribe(b"t", a)
    fanout.subscribe(b"t", b)
    fanout.subscribe(b"u", c)
    assert set(fanout.route(Event(b"/x", b"t"))) == {a, b}
    assert fanout.route(Event(b"/x", b"u")) == (c,)
    assert fanout.route(Event(b"/x", b"nobody")) == ()


def test_a_subscriber_watching_a_token_twice_gets_an_event_once():
    fanout = WatchFanout()
    a = Recorder()
    fanout.subscribe(b"t", a)
    fanout.subscribe(b"t", a)  # two paths, one token
    assert fanout.route(Event(b"/x", b"t")) == (a,)


def test_invariant_2_everyone_is_told_of_the_end():
    fanout = WatchFanout()
    watching, idle, left = Recorder(), Recorder(), Recorder()
    fanout.subscribe(b"t", watching)
    fanout.attach(idle)  # a monitor that watches nothing yet
    fanout.subscribe(b"u", left)
    fanout.unsubscribe(b"u", left)  # it stopped watching, still attached
    assert fanout.everyone() == {watching, idle, left}
    fanout.clear()
    assert not fanout and fanout.route(Event(b"/x", b"t")) == ()
    assert fanout.everyone() == {watching, idle, left}
    for subscriber in fanout.everyone():
        subscriber.connection_lost(ConnectionError("gone"))
    assert [len(s.lost) for s in (watching, idle, left)] == [1, 1, 1]


def test_invariant_2_attachments_are_weak():
    fanout = WatchFanout()
    kept, forgotten = Recorder(), Recorder()
    fanout.attach(kept)
    fanout.attach(forgotten)
    del forgotten
    gc.collect()
    assert fanout.everyone() == {kept}


def test_a_watching_subscriber_is_kept_until_it_unsubscribes():
    # Its watch is the daemon's: events for it must still find it.
    fanout = WatchFanout()
    subscriber = Recorder()
    fanout.subscribe(b"t", subscriber)
    del subscriber
    gc.collect()
    (found,) = fanout.route(Event(b"/x", b"t"))
    found.deliver(Event(b"/x", b"t"))
    assert isinstance(found, Recorder) and found.events
