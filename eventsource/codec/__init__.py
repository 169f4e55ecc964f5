"""Codec layer: pydantic event models to Avro schemas, payloads and CloudEvents headers.

Pure (no Kafka I/O). ``EventCodec`` turns events into Avro single-object payloads and back,
resolving old writer schemas (from ``schemas/*.avsc``) into the current models through
Avro resolution and registered upcasters (:mod:`eventsource.codec.upcasting`);
:mod:`eventsource.codec.registry` adds the Confluent schema registry mode;
:mod:`eventsource.codec.envelope` maps event metadata to record headers.
"""

from eventsource.codec.catalog import SchemaCatalog
from eventsource.codec.compatibility import CompatibilityMode
from eventsource.codec.envelope import build_headers, parse_headers
from eventsource.codec.event_codec import EventCodec
from eventsource.codec.files import check_schema_files, write_schema_files
from eventsource.codec.schema import avro_schema
from eventsource.codec.upcasting import Datum, Upcasters, upcaster

__all__ = [
    "CompatibilityMode",
    "Datum",
    "EventCodec",
    "SchemaCatalog",
    "Upcasters",
    "avro_schema",
    "build_headers",
    "check_schema_files",
    "parse_headers",
    "upcaster",
    "write_schema_files",
]
