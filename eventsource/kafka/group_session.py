"""Consumer-group sessions that outlast a group coordinator's failover.

librdkafka counts a group member's session on the client side too: after
``session.timeout.ms`` without a successful heartbeat it drops the member's whole
assignment (``on_lost``) and rejoins under a new member id, which the new coordinator holds
back until the old ids expire. A coordinator killed with ``kill -9`` answers nobody until
the controller fences it (``broker.session.timeout.ms``, 9 s by default; 8-14 s measured on
a loaded three-node cluster) and its successor has loaded the group. A session shorter than
that turns every coordinator crash into a full rebalance of the group: measured for the
writers group with a 6 s session and for projector services with a 10 s one (every member
revoked every partition; see docs/benchmarks.md, "Failover on a three-broker cluster").

:data:`FAILOVER_SESSION_TIMEOUT_MS` (20 s) leaves about 5 s of margin above the slowest
failover measured; heartbeats at most a second apart (:func:`heartbeat_interval_ms`) keep
the last successful one close to the kill and tell members of a rebalance quickly. The cost
is that a member that crashes keeps its partitions that long before another member gets
them; a member that closes leaves the group at once, and a static member
(``group.instance.id``) restarted with the same identity takes its partitions back at once.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["FAILOVER_SESSION_TIMEOUT_MS", "heartbeat_interval_ms", "session_settings"]

FAILOVER_SESSION_TIMEOUT_MS: Final = 20_000
"""A ``session.timeout.ms`` longer than a group coordinator's failover (see the module)."""


def heartbeat_interval_ms(session_timeout_ms: int) -> int:
    """A sixth of the session, between 0.5 s and 1 s: rebalances are told through
    heartbeats, and the last successful one before a coordinator dies is at most this old."""
    return max(500, min(1000, session_timeout_ms // 6))


def session_settings(session_timeout_ms: int) -> dict[str, Any]:
    """``session.timeout.ms`` and the matching ``heartbeat.interval.ms``."""
    return {
        "session.timeout.ms": session_timeout_ms,
        "heartbeat.interval.ms": heartbeat_interval_ms(session_timeout_ms),
    }
