"""The one check that an aggregate's versions on its events topic are 1, 2, 3, ...

The owner writes versions (``ce_sequence``) without gaps, in one transaction per group
commit. A gap or a repeat therefore means records were lost (retention, compaction, a
deleted topic re-created) or written by something other than the partition's single owner;
folding past it would rebuild versions wrong, so an append at a stale expected version
could succeed. Both readers that fold a partition (the owner's catch-up and the
non-owner's scan) call :func:`check_next_version`.
"""

from __future__ import annotations

from eventsource.errors import VersionSequenceError

__all__ = ["check_next_version"]


def check_next_version(
    topic: str, partition: int, offset: int, aggregate_id: str, previous: int, version: int
) -> None:
    """Refuse ``version`` unless it directly follows ``previous`` (0: no events yet)."""
    if version == previous + 1:
        return
    kind = "a duplicate" if version <= previous else "a gap"
    raise VersionSequenceError(
        f"{topic}[{partition}]@{offset} holds version {version} of {aggregate_id!r} after "
        f"version {previous}: {kind} in its history (records lost to retention or "
        "compaction, or written by something other than the partition's single owner); "
        "the partition cannot be served until the topic's history is repaired"
    )
