"""Group commit for job submissions.

Submitting a job is three inserts and a commit. Done per request, the database round
trips, the commit and the thread hop of a sync endpoint dominate the cost of the whole
API call. Instead, the submit endpoint hands its :class:`Submission` to one writer
thread per process, which takes everything that has queued up (at most
``submit_batch`` submissions) and writes it with :func:`service.submit_many` in one
transaction, then answers each waiting request. Under light load a batch holds one
submission and costs what a direct write would; under heavy load batches grow by
themselves, so throughput rises with concurrency instead of collapsing.

Nothing is acknowledged before its transaction has committed. A batch that fails on
the unique (user, Idempotency-Key) constraint, a deadlock or another operational
database error is retried one submission at a time, so it fails only the submissions
it concerns (a database error becomes a 503). Under load the writer lingers
``submit_linger`` for fuller batches; project lookups are re-used for
``auth_cache_ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from gigafactory.core.facility import Facility
from gigafactory.service.errors import Unavailable
from gigafactory.service.jobs import service
from gigafactory.service.jobs.service import Outcome, ProjectRef, Submission
from gigafactory.service.settings import Settings

log = logging.getLogger("gigafactory.service")

Result = Outcome | BaseException


@dataclass(slots=True)
class _Waiting:
    item: Submission
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Outcome]


def _settle(fut: asyncio.Future[Outcome], result: Result) -> None:
    if fut.done():  # the request went away (client disconnected)
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
    else:
        fut.set_result(result)


class SubmitBatcher:
    """One writer thread per process; see the module docstring. The thread starts with
    the first submission and stops with :meth:`close`."""

    def __init__(
        self,
        sessions: Callable[[], Session],
        config: Callable[[], tuple[Settings, Facility]],
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._config = config  # read per batch: settings may be replaced at run time
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[_Waiting | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._waiting = 0  # submissions queued or being written
        # project lookups (id, ancestry, has a budget) of recent batches, with their
        # expiry; kept like tokens (settings.auth_cache_ttl) and dropped at once when a
        # tenant changes through this process
        self._projects: dict[str, tuple[float, ProjectRef]] = {}

    def forget_projects(self) -> None:
        """A tenant changed (budget, parent, deletion): look projects up afresh."""
        self._projects = {}

    def open(self) -> None:
        """Accept submissions again after :meth:`close` (an app started anew)."""
        with self._lock:
            self._closed = False

    async def submit(self, item: Submission) -> Outcome:
        """Queue ``item`` and wait until its batch has committed. Raises the
        :class:`ServiceError` that refused it, :class:`Unavailable` when the service is
        stopping or too many submissions wait, or the database error of its write."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] = loop.create_future()
        with self._lock:  # checked and queued together: close() cannot slip in between
            if self._closed:
                raise Unavailable("the service is stopping; retry the submission (with its "
                                  "Idempotency-Key)")
            if self._waiting >= self._config()[0].submit_queue:
                raise Unavailable(f"{self._waiting} submissions are already waiting to be "
                                  "written; retry shortly (with the same Idempotency-Key)")
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="gigafactory-submit",
                                                daemon=True)
                self._thread.start()
            self._waiting += 1
            self._queue.put(_Waiting(item, loop, fut))
        return await fut

    def close(self, timeout: float = 70.0) -> None:
        """Write what is queued, then stop the writer thread (waiting at most
        ``timeout`` s: longer than a connection-pool wait)."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout)

    # ------------------------------------------------------------- writer thread
    def _fill(self, batch: list[_Waiting], most: int) -> bool:
        """Add what is queued, up to ``most``; True when the stop sentinel came."""
        while len(batch) < most:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return False
            if nxt is None:
                return True
            batch.append(nxt)
        return False

    def _run(self) -> None:
        busy = False  # the last batch held more than one submission
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            stop = False
            try:
                settings = self._config()[0]
                stop = self._fill(batch, settings.submit_batch)
                if not stop and busy and len(batch) < settings.submit_batch and settings.submit_linger > 0:
                    # Under load, wait a moment for the answers just sent to come back as
                    # new submissions (like PostgreSQL's commit_delay): fewer, fuller batches.
                    time.sleep(settings.submit_linger)
                    stop = self._fill(batch, settings.submit_batch)
                busy = len(batch) > 1
                results = self._write([w.item for w in batch])
            except BaseException as exc:  # a bug must not leave requests waiting forever
                log.exception("submission writer failed on a batch of %d", len(batch))
                results = [exc] * len(batch)
            self._answer(batch, results)
            if stop:
                break
        # Stopped: anything queued after the sentinel gets a clear answer.
        left: list[_Waiting] = []
        with contextlib.suppress(queue.Empty):
            while True:
                w = self._queue.get_nowait()
                if w is not None:
                    left.append(w)
        self._answer(left, [Unavailable("the service is stopping; retry the submission")] * len(left))

    def _answer(self, batch: list[_Waiting], results: list[Result]) -> None:
        with self._lock:
            self._waiting -= len(batch)
        if self._on_batch is not None and batch:
            try:
                self._on_batch(len(batch))
            except Exception:  # metrics must never fail a committed submission
                log.exception("submission batch hook failed")
        for w, res in zip(batch, results, strict=True):
            with contextlib.suppress(RuntimeError):  # that request's event loop is gone
                w.loop.call_soon_threadsafe(_settle, w.future, res)

    def _write(self, items: list[Submission]) -> list[Result]:
        settings, facility = self._config()
        known, clock = self._projects, time.monotonic()
        cached = {n: ref for n, (until, ref) in known.items() if until > clock}
        projects: dict[str, ProjectRef | None] = dict(cached)  # submit_many adds what it looks up
        try:
            with self._sessions() as db:
                results: list[Result] = list(service.submit_many(db, items, settings, facility, projects))
            looked_up = {n: (clock + settings.auth_cache_ttl, ref) for n, ref in projects.items()
                         if ref is not None and n not in cached}
            if settings.auth_cache_ttl > 0 and looked_up and known is self._projects:  # not forgotten meanwhile
                self._projects = {**{n: v for n, v in known.items() if n in cached}, **looked_up}
            return results
        except (IntegrityError, OperationalError) as exc:
            if len(items) == 1 and not isinstance(exc, IntegrityError):
                return [exc]
            # An Idempotency-Key used twice (a retry racing its original, or two in one
            # batch), a deadlock with another process, or a transient database error:
            # one by one, so it fails only the submissions it concerns.
            log.info("submission batch of %d retried one by one: %s", len(items), exc)
            return [self._one(item, settings, facility) for item in items]

    def _one(self, item: Submission, settings: Settings, facility: Facility) -> Result:
        try:
            with self._sessions() as db:
                return service.submit(db, item.who, item.body, item.key, settings, facility, item.now)
        except Exception as exc:  # a ServiceError refusing it, or a database error
            return exc
