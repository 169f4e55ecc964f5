"""Projections: read models built from event topics with exactly-once effect.

Declare a :class:`Projection` with :func:`table` and :func:`on`, run it with a
:class:`ProjectionRunner`, wait for your own writes with :func:`wait_for_positions`.
"""

from eventsource.projection.context import Context
from eventsource.projection.definition import Projection, on, table, validate_identifier
from eventsource.projection.runner import ProjectionRunner, RunStats, default_group_id
from eventsource.projection.status import PartitionStatus, projection_status
from eventsource.projection.store import create_read_model_engine, set_live_version
from eventsource.projection.types import (
    DeadLetterPolicy,
    Failure,
    FailureAction,
    FailureHook,
    NullListener,
    RawRecord,
    RunnerListener,
    Stage,
)
from eventsource.projection.wait import wait_for_positions

__all__ = [
    "Context",
    "DeadLetterPolicy",
    "Failure",
    "FailureAction",
    "FailureHook",
    "NullListener",
    "PartitionStatus",
    "Projection",
    "ProjectionRunner",
    "RawRecord",
    "RunStats",
    "RunnerListener",
    "Stage",
    "create_read_model_engine",
    "default_group_id",
    "on",
    "projection_status",
    "set_live_version",
    "table",
    "validate_identifier",
    "wait_for_positions",
]
