"""Page tokens: opaque to clients, each a tagged text this service can read back.

A token is the URL-safe base64 of a one-letter tag and a text; a token of another
tag, or one this service never issued, is INVALID_ARGUMENT naming ``page_token``.
"""

from __future__ import annotations

import base64

from .status import invalid

_FOREIGN = "is not a token this service issued"


def encode(tag: str, text: str) -> str:
    return base64.urlsafe_b64encode(f"{tag}{text}".encode()).decode().rstrip("=")


def decode(token: str, tag: str) -> str:
    """The text of a token of ``tag``."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raw = ""
    if not raw.startswith(tag):
        raise invalid("page_token", _FOREIGN)
    return raw[len(tag) :]


def _number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise invalid("page_token", _FOREIGN) from None
    if value < 0:
        raise invalid("page_token", _FOREIGN)
    return value


def offset_token(offset: int) -> str:
    """Pages by position in a list (ListEndorsements, ListModerationActions)."""
    return encode("o", str(offset))


def offset_of(token: str) -> int:
    return 0 if not token else _number(decode(token, "o"))


def topic_token(after: str) -> str:
    """Topic pages follow names (keyset paging): the token holds the last name given."""
    return encode("t", after)


def topic_after(token: str) -> str:
    return "" if not token else decode(token, "t")


def history_token(resume: float) -> str:
    """History pages follow time: the token holds the next point's time (microseconds)."""
    return encode("h", str(round(resume * 1e6)))


def history_resume(token: str) -> float | None:
    return None if not token else _number(decode(token, "h")) / 1e6


def suspects_token(sequence: int, offset: int, kind: int) -> str:
    """Suspect pages are offsets into one report, named by its snapshot's sequence."""
    return encode("s", f"{sequence}.{offset}.{kind}")


def suspects_position(token: str, kind: int) -> tuple[int | None, int]:
    """The report's sequence (None for the first page) and the offset."""
    if not token:
        return None, 0
    parts = decode(token, "s").split(".")
    if len(parts) != 3:
        raise invalid("page_token", _FOREIGN)
    sequence, offset, given = (_number(p) for p in parts)
    if given != kind:
        raise invalid("page_token", "was issued for another kind")
    return sequence, offset
