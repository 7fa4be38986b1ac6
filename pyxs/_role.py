"""The reading role: which thread reads the connection, and who is next.

Pure state, no I/O and no threads: the threaded router holds its lock
around every method here and performs the wake-ups the methods return.

Theory of operation
-------------------
One connection carries the replies of many callers. Exactly one party at a
time may read it: it holds the *reading role*. A caller that sends a
request and finds the role free takes it and reads until its own reply is
in, completing other callers' replies on the way (*leader*); a caller that
finds the role taken waits on its reply slot as a *follower*. When the
holder leaves, the role passes to the oldest follower still waiting, so a
reply never waits for a thread hand-off unless someone else was reading
already. The router thread (``THREAD``) takes the role only while watches
exist and callers have been quiet, so that events reach monitors with
nobody calling, and it gives the role back as soon as a caller waits.

A follower's slot is woken exactly once, for exactly one of two reasons,
which the slot's state tells apart: its reply is in (``DONE``), or it was
made the holder (``READER``). :meth:`ReadingRole.release` names the
follower it promotes; the driver marks the slot ``READER`` and wakes it.

States and transitions (``F`` = followers, oldest first)::

  holder   event                    -> holder   F           wake
  -------  -----------------------  ---------  ----------  ---------------
  None     arrive(c)                -> c        F           -
  c'       arrive(c)                -> c'       F + c       - (c waits)
  THREAD   arrive(c)                -> THREAD   F + c       the thread
  c        completed(f)             -> c        F - f       - (f is DONE)
  any      give_up(f), f in F       -> same     F - f       -
  f        give_up(f)               -> f        F           - (f releases)
  h        release(), F = f + rest  -> f        rest        f (READER)
  h        release(), F empty,
           thread wants the role    -> THREAD   -           the thread
  h        release(), F empty       -> None     -           the thread if it
                                                            waits for "free"
  None     thread_take()            -> THREAD   F           -
  c        thread_take()            -> c        F           - (thread waits)

Invariants
----------
1. The holder is never among the followers.
2. Followers are exactly the callers waiting for a reply that is not in
   yet: the holder removes a follower when it completes that follower's
   reply (:meth:`~ReadingRole.completed`), a follower that gives up
   removes itself.
3. Only the holder reads, and only the holder completes replies; hence a
   promoted follower's reply cannot be completed by anyone but itself.
4. Once closed, a release hands the role to a waiting router thread before
   any follower, so shutdown can take the role and fail everybody.
"""

from typing import Dict, Generic, Optional, Tuple, TypeVar, Union

__all__ = ["ReadingRole", "THREAD", "LEAD", "FOLLOW", "WAKE_THREAD",
           "SERVE", "SLEEP", "SOON"]

W = TypeVar("W")


class _Thread:
    """The router thread, as holder of the role."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "THREAD"


#: The router thread, as a holder of the role.
THREAD = _Thread()

# release()'s answers that promote nobody, made once (it runs per call).
_NOBODY: Tuple[None, bool] = (None, False)
_WAKE_THREAD_ONLY: Tuple[None, bool] = (None, True)

# What arrive() tells the caller to do.
LEAD = "lead"                # read until your reply is in, then release()
FOLLOW = "follow"            # wait on your slot: DONE or READER
WAKE_THREAD = "wake-thread"  # follow, and wake the thread to hand over

# What thread_look() tells the router thread to do.
SERVE = "serve"   # it holds the role now: read for the monitors
SLEEP = "sleep"   # sleep until woken (a caller keeps the role)
SOON = "soon"     # look again after the quiet period


class ReadingRole(Generic[W]):
    """Who reads the connection; see the module docstring."""

    __slots__ = ("holder", "followers", "thread_wants", "thread_wants_free",
                 "reads", "closed")

    def __init__(self) -> None:
        self.holder: Union[None, W, _Thread] = None
        #: Waiting callers, oldest first (an insertion-ordered set).
        self.followers: Dict[W, None] = {}
        #: The router thread waits for the role (hang-up, shutdown).
        self.thread_wants = False
        #: The router thread sleeps until the role is released.
        self.thread_wants_free = False
        #: Times a caller took the role: the thread's measure of quiet.
        self.reads = 0
        self.closed = False

    def arrive(self, caller: W) -> str:
        """A caller waits for a reply: LEAD, FOLLOW or WAKE_THREAD."""
        holder = self.holder
        if holder is None:
            self.holder = caller
            self.reads += 1
            return LEAD
        self.followers[caller] = None
        return WAKE_THREAD if holder is THREAD else FOLLOW

    def completed(self, caller: W) -> None:
        """The holder completed ``caller``'s reply: it need not wait for
        the role any more. A single dict operation (see invariant 2)."""
        self.followers.pop(caller, None)

    def give_up(self, caller: W) -> bool:
        """``caller`` stops waiting (timeout, interrupt). Returns True when
        it had been promoted meanwhile: it must then :meth:`release`."""
        self.followers.pop(caller, None)
        return self.holder is caller

    def release(self) -> Tuple[Optional[W], bool]:
        """The holder leaves. Returns ``(follower, wake_thread)``: the
        follower promoted to holder (mark it READER and wake it), and
        whether the router thread must be woken."""
        followers = self.followers
        if followers and not (self.closed and self.thread_wants):
            successor = next(iter(followers))
            del followers[successor]
            self.holder = successor
            return successor, False
        if self.thread_wants:
            self.holder = THREAD
            return _WAKE_THREAD_ONLY
        self.holder = None
        if self.thread_wants_free:
            self.thread_wants_free = False
            return _WAKE_THREAD_ONLY
        return _NOBODY

    def thread_take(self) -> bool:
        """The router thread asks for the role: True if it holds it now,
        else it is next once the holder releases (and is woken then)."""
        if self.holder is None or self.holder is THREAD:
            self.holder = THREAD
            self.thread_wants = False
            return True
        self.thread_wants = True
        return False

    def thread_look(self, seen: Optional[int]) -> Tuple[str, int]:
        """While watches exist: what the idle router thread does next.

        ``seen`` is :attr:`reads` at its previous look (None at first).
        It takes the role (SERVE) when the role is free and no caller took
        it since the last look; it sleeps until the role is released
        (SLEEP) when one caller has held it all along; otherwise it looks
        again after the quiet period (SOON). Returns the decision and the
        new ``seen``.
        """
        reads = self.reads
        if reads == seen:
            if self.holder is None:
                self.holder = THREAD
                return SERVE, reads
            if self.holder is not THREAD:
                self.thread_wants_free = True
                return SLEEP, reads
        return SOON, reads
