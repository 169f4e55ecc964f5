"""Which version a service runs: the live one unless pinned (see eventsource.service.follow)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from eventsource.projection.store import create_read_model_engine, ensure_schema, set_live_version
from eventsource.service.follow import VersionFollower, at_version
from examples.bank.projections import AccountBalances


def _database(tmp_path: Path, *, live: int, built: tuple[int, ...] = ()) -> tuple[str, Engine]:
    url = f"sqlite:///{tmp_path / 'rm.db'}"
    engine = create_read_model_engine(url)
    base = AccountBalances(name="follow", topics=["follow.events"])
    for version in sorted({live, *built}):
        ensure_schema(engine, at_version(base, version))
    with engine.begin() as conn:
        set_live_version(conn, at_version(base, live), live)
    return url, engine


def test_an_unpinned_service_starts_on_the_live_version(tmp_path: Path) -> None:
    url, engine = _database(tmp_path, live=2, built=(1,))
    follower = VersionFollower(
        AccountBalances(name="follow", topics=["follow.events"]), url, pinned=False
    )
    assert follower.start().version == 2
    assert follower.check() == (False, None)
    follower.close()
    engine.dispose()


def test_an_unpinned_service_switches_when_a_newer_version_goes_live(tmp_path: Path) -> None:
    url, engine = _database(tmp_path, live=1, built=(2,))
    follower = VersionFollower(
        AccountBalances(name="follow", topics=["follow.events"]), url, pinned=False
    )
    assert follower.start().version == 1
    with engine.begin() as conn:
        set_live_version(conn, at_version(follower.code, 2), 2)
    assert follower.check() == (True, None)
    assert follower.start().version == 2
    follower.close()
    engine.dispose()


def test_a_newer_code_version_builds_ahead_of_the_live_one(tmp_path: Path) -> None:
    url, engine = _database(tmp_path, live=1)
    follower = VersionFollower(
        AccountBalances(name="follow", version=2, topics=["follow.events"]), url, pinned=False
    )
    assert follower.start().version == 2
    assert follower.check() == (False, None)  # not a switch, and ready: a rolling deployment
    follower.close()
    engine.dispose()


def test_a_pinned_service_never_switches_and_says_why_it_is_not_ready(tmp_path: Path) -> None:
    url, engine = _database(tmp_path, live=2, built=(1,))
    follower = VersionFollower(
        AccountBalances(name="follow", topics=["follow.events"]), url, pinned=True
    )
    assert follower.start().version == 1
    switch, reason = follower.check()
    assert not switch
    assert reason is not None and "version 1 is not live (version 2 is)" in reason
    follower.close()
    engine.dispose()
