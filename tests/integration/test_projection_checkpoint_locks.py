"""On PostgreSQL a batch locks only its own partitions' checkpoint rows, so replicas that
own different partitions never wait for each other."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from eventsource.projection.checkpoints import (
    checkpoints_table,
    ensure_checkpoint_rows,
    read_checkpoints,
    write_checkpoints,
)
from eventsource.projection.store import create_read_model_engine

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def engine(postgres_url: str, unique_name: str) -> Iterator[Engine]:
    engine = create_read_model_engine(postgres_url)
    checkpoints_table.metadata.create_all(engine, checkfirst=True)
    yield engine
    with engine.begin() as conn:
        conn.execute(
            checkpoints_table.delete().where(checkpoints_table.c.projection == unique_name[-60:])
        )
    engine.dispose()


def test_a_batch_on_one_partition_does_not_wait_for_a_batch_on_another(
    engine: Engine, unique_name: str
) -> None:
    name, topic = unique_name[-60:], "locks.events"
    with engine.begin() as conn:
        ensure_checkpoint_rows(conn, name, 1, [(topic, 0), (topic, 1)])
    # Replica A holds partition 0's batch transaction open.
    with engine.connect() as a, a.begin():
        read_checkpoints(a, name, 1, [(topic, 0)], for_update=True)
        # Replica B commits a batch of partition 1 meanwhile; the lock timeout only turns
        # "B waits for A" (a deadlock in this single thread) into an error.
        with engine.connect() as b, b.begin():
            b.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
            floors = read_checkpoints(b, name, 1, [(topic, 1)], for_update=True)
            assert floors == {(topic, 1): 0}
            write_checkpoints(b, name, 1, {(topic, 1): 42})
        write_checkpoints(a, name, 1, {(topic, 0): 7})
    with engine.connect() as conn:
        assert read_checkpoints(conn, name, 1) == {(topic, 0): 7, (topic, 1): 42}


def test_a_batch_on_the_same_partition_waits(engine: Engine, unique_name: str) -> None:
    name, topic = unique_name[-60:], "locks.events"
    with engine.begin() as conn:
        ensure_checkpoint_rows(conn, name, 1, [(topic, 0)])
    with engine.connect() as a, a.begin():
        read_checkpoints(a, name, 1, [(topic, 0)], for_update=True)
        with engine.connect() as b, b.begin(), pytest.raises(OperationalError, match="lock"):
            b.exec_driver_sql("SET LOCAL lock_timeout = '200ms'")
            read_checkpoints(b, name, 1, [(topic, 0)], for_update=True)
