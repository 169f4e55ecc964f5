"""Codec layer: pydantic event models to Avro schemas, payloads and CloudEvents headers.

Pure (no Kafka I/O). ``EventCodec`` turns events into Avro single-object payloads and back,
resolving old writer schemas (from ``schemas/*.avsc``) into the current models;
:mod:`eventsource.codec.envelope` maps event metadata to record headers.
"""

from eventsource.codec.catalog import SchemaCatalog
from eventsource.codec.envelope import build_headers, parse_headers
from eventsource.codec.event_codec import EventCodec
from eventsource.codec.files import check_schema_files, write_schema_files
from eventsource.codec.schema import avro_schema

__all__ = [
    "EventCodec",
    "SchemaCatalog",
    "avro_schema",
    "build_headers",
    "check_schema_files",
    "parse_headers",
    "write_schema_files",
]
