"""The content types weir reads and writes, and how a Content-Type header maps onto them."""

from __future__ import annotations

from typing import Final, Literal

from engine.errors import CodecError

ARROW_STREAM: Final = "application/vnd.apache.arrow.stream"
"""Arrow IPC stream holding exactly one record batch; what travels on Kafka."""
ARROW_FILE: Final = "application/vnd.apache.arrow.file"
"""Arrow IPC file format, used over HTTP and for ``.arrow`` files."""
PANDAS_RECORDS: Final = "application/json; format=pandas-records"
"""JSON list of row objects, as ``DataFrame.to_json(orient="records")`` writes."""

ContentType = Literal[
    "application/vnd.apache.arrow.stream",
    "application/vnd.apache.arrow.file",
    "application/json; format=pandas-records",
]

EXPECTED: Final[dict[ContentType, str]] = {
    ARROW_STREAM: f"an Arrow IPC stream ({ARROW_STREAM!r})",
    ARROW_FILE: f"an Arrow IPC file ({ARROW_FILE!r})",
    PANDAS_RECORDS: 'a JSON list of row objects, e.g. [{"x": [1.0, 2.0]}]',
}
"""What a payload of each content type must be, as error messages say it."""

_MEDIA_TYPES: dict[str, ContentType] = {
    ARROW_STREAM: ARROW_STREAM,
    ARROW_FILE: ARROW_FILE,
    "application/json": PANDAS_RECORDS,
}
_CANONICAL = frozenset({ARROW_STREAM, ARROW_FILE, PANDAS_RECORDS})
_JSON_FORMATS = frozenset({"pandas-records", "records"})


def normalize_content_type(
    header: str | bytes | None, default: ContentType = ARROW_STREAM
) -> ContentType:
    """Map a Content-Type header to one of weir's content types.

    Case, spaces and parameter order do not matter; plain ``application/json``
    means pandas records, and a missing header gives ``default``.
    """
    if header in _CANONICAL:  # the hot path: weir's own constants
        return header  # type: ignore[return-value]
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if not header or not header.strip():
        return default
    media, *params = (part.strip().lower() for part in header.split(";"))
    found = _MEDIA_TYPES.get(media)
    formats = {
        value.strip().strip('"')
        for key, _, value in (param.partition("=") for param in params)
        if key.strip() == "format"
    }
    if found is None or (found == PANDAS_RECORDS and not formats <= _JSON_FORMATS):
        accepted = ", ".join(repr(ct) for ct in (ARROW_STREAM, ARROW_FILE, PANDAS_RECORDS))
        raise CodecError(
            f"unsupported content type {header!r}: use one of {accepted} "
            "(plain 'application/json' means pandas records)"
        )
    return found
