"""The partitioner is bit-exact with Kafka's Java default partitioner."""

from __future__ import annotations

import pytest

from eventsource.store.partitioner import murmur2, partition_for, partition_for_id


@pytest.mark.parametrize(
    ("key", "expected"),
    [  # vectors from Kafka's org.apache.kafka.common.utils.UtilsTest#testMurmur2
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafkas_java_implementation(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_partition_is_the_positive_hash_modulo_the_partition_count() -> None:
    assert partition_for(b"foobar", 6) == (-790332482 & 0x7FFFFFFF) % 6
    assert partition_for(b"abc", 7) == 479470107 % 7


def test_aggregate_ids_are_hashed_as_utf8() -> None:
    assert partition_for_id("zürich", 12) == partition_for("zürich".encode(), 12)


def test_every_key_lands_in_range_and_keys_spread_over_partitions() -> None:
    partitions = {partition_for_id(f"acc-{i}", 6) for i in range(200)}
    assert partitions == set(range(6))


def test_a_partition_count_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="at least one partition"):
        partition_for(b"k", 0)
