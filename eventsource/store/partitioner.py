"""Kafka's default key partitioner, bit-exact with the Java client.

Java producers (and Kafka Streams, ksqlDB, Connect) place a keyed record on
``positive(murmur2(key)) % partitions``. The store computes partitions itself and produces
with an explicit partition, so a Java service reading or writing the same topic agrees on
where every aggregate lives. (librdkafka's own default is ``consistent_random``, a CRC32
scheme, which would not agree.)
"""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """32-bit murmur2 of ``data`` as a signed int, as ``org.apache.kafka.common.utils.Utils``."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    tail = length & ~3
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    extra = length & 3
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's Java default partitioner chooses for ``key``."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, got {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def partition_for_id(aggregate_id: str, partitions: int) -> int:
    """The partition of an aggregate: its id, UTF-8 encoded, is the record key."""
    return partition_for(aggregate_id.encode("utf-8"), partitions)
