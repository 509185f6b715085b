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
            "(WEIR_MAX_MESSAGE_BYTES): send fewer rows per message"
        )


class InputTooLarge(WeirError):
    """A record on an input topic is bigger than weir's workers take; it is answered with this
    error and dead-lettered (its value left out: it is over the limit of what weir sends)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the record is {size} bytes, over the {limit}-byte limit (WEIR_MAX_MESSAGE_BYTES): "
            "send fewer rows per record"
        )


class FetcherDied(WeirError):
    """aiokafka's background fetch task ended with an error; its consumer returns nothing from
    then on, so the consumer must be replaced (a worker exits and is restarted)."""


class KafkaUnreachable(WeirError):
    """weir's Kafka settings do not reach a broker (address, TLS or credentials)."""
