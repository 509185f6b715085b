"""Errors of the stream layer."""

from __future__ import annotations

from engine.errors import WeirError


class DeliveryFailed(WeirError):
    """A record could not be delivered to Kafka: the input it came from is not committed,
    so it is read and processed again (the worker exits and is restarted)."""


class RecordTooLarge(WeirError):
    """A result is bigger than a worker may send; the request is answered with this error."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the result is {size} bytes, over the {limit}-byte limit of a Kafka record "
            "(WEIR_MAX_MESSAGE_BYTES): send fewer rows per message")


class FetcherDied(WeirError):
    """aiokafka's background fetch task ended with an error; its consumer returns nothing from
    then on, so the consumer must be replaced (a worker exits and is restarted)."""
