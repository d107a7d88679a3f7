"""The start queue of the hub's servers, and the progress a waiting trainee reads.

When a class logs in at once, starting every server together makes each of them slow and the
hub itself unresponsive (they share two cores). JupyterHub's own ``concurrent_spawn_limit``
refuses the extra logins with HTTP 429 ("try again later"); here they wait in line instead:
at most ``limit`` servers start at a time, in the order they were asked for, and each waiting
trainee's spawn-pending page shows their place (:class:`ProgressLog` feeds
``Spawner.progress()``). Starts a class session asks for in the background queue behind every
trainee who is waiting in front of a browser.

One hub is one process, so the queue is plain asyncio state in it (no locks across threads).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

INTERACTIVE = 0  # a trainee waiting in a browser
BACKGROUND = 1  # a class session warming a server up


@dataclass(eq=False)
class Ticket:
    """One server start in the queue."""

    name: str
    priority: int
    seq: int
    granted: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def key(self) -> tuple[int, int]:
        return (self.priority, self.seq)


class SpawnQueue:
    """At most ``limit`` holders at once; the others wait in (priority, arrival) order."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"the start queue needs a limit of at least 1, not {limit}")
        self.limit = limit
        self._seq = itertools.count()
        self._waiting: list[Ticket] = []
        self._holding: set[Ticket] = set()

    def join(self, name: str, priority: int = INTERACTIVE) -> Ticket:
        ticket = Ticket(name, priority, next(self._seq))
        self._waiting.append(ticket)
        self._waiting.sort(key=lambda t: t.key)
        self._grant()
        return ticket

    def place(self, ticket: Ticket) -> int:
        """1 for the next in line, 0 once the ticket holds a slot."""
        return 0 if ticket.granted else self._waiting.index(ticket) + 1

    @property
    def starting(self) -> int:
        return len(self._holding)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def places(self, ticket: Ticket) -> AsyncIterator[int]:
        """Yield the ticket's place each time it changes; return once it holds a slot."""
        while not ticket.granted:
            ticket.changed.clear()
            yield self.place(ticket)
            if not ticket.granted:
                await ticket.changed.wait()

    def leave(self, ticket: Ticket) -> None:
        """Give the slot back (or leave the line: a start that was cancelled while waiting)."""
        self._holding.discard(ticket)
        if ticket in self._waiting:
            self._waiting.remove(ticket)
        self._grant()
        for t in self._waiting:  # everyone behind moved up a place
            t.changed.set()

    def _grant(self) -> None:
        while self._waiting and len(self._holding) < self.limit:
            t = self._waiting.pop(0)
            t.granted = True
            self._holding.add(t)
            t.changed.set()


class ProgressLog:
    """The progress events of one server start, for any number of readers (each refresh of
    the spawn-pending page reads them from the beginning, then follows new ones)."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self._signal = asyncio.Event()

    def add(self, message: str, progress: int | None = None) -> None:
        event: dict = {"message": message}
        if progress is not None:
            event["progress"] = progress
        self.events.append(event)
        self._signal.set()
        self._signal = asyncio.Event()

    async def follow(self) -> AsyncIterator[dict]:
        """Every event so far, then each new one (JupyterHub stops reading once the server is
        up, so this never ends by itself)."""
        i = 0
        while True:
            while i < len(self.events):
                yield self.events[i]
                i += 1
            await self._signal.wait()
