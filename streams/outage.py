"""An outage of something retried in a loop (Redis for heartbeats): said once, not every round.

A worker beats every second and the deployer supervises every second; while Redis is away
each round fails the same way. `Outage` logs the first failure as a warning and the
recovery as one line, and stays quiet in between.
"""

from __future__ import annotations

import logging
import threading
import time

from engine.errors import WeirError


class Outage:
    """Whether `what` fails now, said once when it starts failing and once when it works again.

    Example:
        outage = Outage(log, "heartbeats of worker w-1")
        try:
            beat()
        except Exception as exc:  # e.g. RegistryUnavailable: it serves on meanwhile
            outage.failed(exc)
        else:
            outage.ok()

    :param log: the logger that says it.
    :param what: what fails, as the start of a sentence ("heartbeats of worker w-1").
    """

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self._lock = threading.Lock()  # a worker beats from a thread and from its event loop
        self.since: float | None = None
        """When the current outage began (time.monotonic()); None while it works."""

    def failed(self, exc: BaseException) -> None:
        """Note a failure: a warning if it is the first since `what` last worked. One of weir's
        own errors says what is wrong in its message; another comes with its traceback."""
        with self._lock:
            if self.since is not None:
                return
            self.since = time.monotonic()
        self._log.warning(
            "%s failed: %s; retrying quietly until it works again",
            self._what,
            exc if isinstance(exc, WeirError) else f"{type(exc).__name__}: {exc}",
            exc_info=None if isinstance(exc, WeirError) else exc,
        )

    def ok(self) -> None:
        """Note a success: says so if `what` was failing."""
        with self._lock:
            since, self.since = self.since, None
        if since is not None:  # a warning too: said where the failure was (no INFO in a server)
            self._log.warning(
                "%s succeeded again, after %.0fs of failures", self._what, time.monotonic() - since
            )
