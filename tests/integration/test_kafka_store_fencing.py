"""Zombie fencing: a newer writer for the same partitions makes the old one stop."""

from __future__ import annotations

from decimal import Decimal

import pytest

from eventsource.errors import FencedError
from eventsource.kafka.config import KafkaSettings
from eventsource.store.kafka import KafkaEventStore
from examples.bank.domain import Account, AccountOpened, MoneyDeposited

pytestmark = pytest.mark.integration

ACCOUNT = "bank.account"


def test_a_new_writer_fences_the_old_one_which_fails_fast_and_loses_nothing(
    kafka_settings: KafkaSettings, unique_name: str
) -> None:
    settings = kafka_settings.model_copy(update={"application_id": unique_name})

    def store() -> KafkaEventStore:
        return KafkaEventStore(settings, [Account], partitions=2, topic_prefix=f"{unique_name}.")

    with store() as zombie:
        for i in range(10):
            zombie.append(ACCOUNT, f"acc-{i}", [AccountOpened(owner=str(i))], 0)
        zombie.append(ACCOUNT, "acc-0", [MoneyDeposited(amount=Decimal(7))], 1)

        with store() as successor:
            # The successor's state includes everything the zombie committed.
            assert [successor.version(ACCOUNT, f"acc-{i}") for i in range(10)] == [2] + [1] * 9
            assert successor.load(Account, "acc-0").balance == Decimal(7)

            # Fails as fenced: a hang would end in UncertainCommitError at the timeout.
            with pytest.raises(FencedError, match="fenced by a newer writer"):
                zombie.append(ACCOUNT, "acc-0", [MoneyDeposited(amount=Decimal(1))], 2, timeout=30)

            # Every later append to that partition fails at once, without a round trip,
            # and the zombie no longer serves its (possibly stale) state either.
            with pytest.raises(FencedError):
                zombie.append(ACCOUNT, "acc-0", [MoneyDeposited(amount=Decimal(1))], 2, timeout=5)
            with pytest.raises(FencedError):
                zombie.load(Account, "acc-0")

            result = successor.append(ACCOUNT, "acc-0", [MoneyDeposited(amount=Decimal(3))], 2)
            assert result.version == 3
            assert successor.load(Account, "acc-0").balance == Decimal(10)

    with store() as third:
        assert third.load(Account, "acc-0").balance == Decimal(10)
        assert third.version(ACCOUNT, "acc-0") == 3
