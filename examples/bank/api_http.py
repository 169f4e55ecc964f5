"""HTTP details of the bank API: ETags, If-Match, positions tokens, problem responses.

Kept apart from the routes so ``api.py`` reads as the commands it serves.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fastapi import HTTPException

from eventsource.domain import Position

__all__ = [
    "POSITIONS_HEADER",
    "etag",
    "expected_version",
    "format_positions",
    "parse_positions",
    "problem",
]

POSITIONS_HEADER = "Event-Positions"
"""Response header of a write: where its events are, to pass back as ``?after=``."""

_ETAG = re.compile(r'^(?:W/)?"?(\d+)"?$')
_POSITION = re.compile(r"^([A-Za-z0-9._-]+):(\d+):(\d+)$")


def problem(status: int, kind: str, detail: str) -> HTTPException:
    """An error response with a machine-readable ``type`` and a human ``detail``."""
    return HTTPException(status, detail={"type": kind, "detail": detail})


def etag(version: int) -> str:
    """The strong entity tag of an aggregate version."""
    return f'"{version}"'


def expected_version(if_match: str | None) -> int | None:
    """The version an ``If-Match`` header demands (``None``: none, or ``*``)."""
    if if_match is None or if_match.strip() == "*":
        return None
    match = _ETAG.match(if_match.strip())
    if match is None:
        raise problem(
            400,
            "bad-if-match",
            f"If-Match {if_match!r} is not an ETag of this API: send the ETag of the last "
            'response for this account, e.g. If-Match: "3"',
        )
    return int(match.group(1))


def format_positions(positions: Sequence[Position]) -> str:
    """``topic:partition:offset`` of the last event per partition, comma-separated."""
    last: dict[tuple[str, int], int] = {}
    for p in positions:
        last[(p.topic, p.partition)] = max(last.get((p.topic, p.partition), -1), p.offset)
    return ",".join(f"{t}:{p}:{o}" for (t, p), o in sorted(last.items()))


def parse_positions(token: str) -> list[Position]:
    """The positions of an ``Event-Positions`` header value (``?after=``)."""
    positions = []
    for part in filter(None, (p.strip() for p in token.split(","))):
        match = _POSITION.match(part)
        if match is None:
            raise problem(
                400,
                "bad-after",
                f"?after= part {part!r} is not topic:partition:offset: pass the "
                f"{POSITIONS_HEADER} header of a write unchanged",
            )
        positions.append(Position(match.group(1), int(match.group(2)), int(match.group(3))))
    return positions
