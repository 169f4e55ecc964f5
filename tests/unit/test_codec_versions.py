"""Old events are read with the right rules: upcasters registered late still apply,
schema versions order numerically, and two versions sharing one fingerprint are refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eventsource.codec import EventCodec, avro_schema, check_schema_files
from eventsource.codec.catalog import SchemaCatalog
from eventsource.codec.files import render_schema
from eventsource.codec.upcasting import Datum, Upcasters
from eventsource.domain import Event


class NoteV1(Event):
    __namespace__ = "help.notes"
    __event_name__ = "NoteAdded"
    text: str


class NoteAdded(Event):  # v2: the text is split into a title and a body
    __namespace__ = "help.notes"
    __event_name__ = "NoteAdded"
    title: str = ""
    text: str


def first_line_as_title(data: Datum) -> Datum:
    title, _, body = data["text"].partition("\n")
    return {"title": title, "text": body}


def _release(directory: Path, version: int, schema: dict[str, Any]) -> None:
    (directory / f"help.notes.NoteAdded.v{version}.avsc").write_text(render_schema(schema))


def test_an_upcaster_registered_after_the_first_decode_is_applied(tmp_path: Path) -> None:
    _release(tmp_path, 1, avro_schema(NoteV1))
    _release(tmp_path, 2, avro_schema(NoteAdded))
    old = EventCodec.for_events([NoteV1]).encode(NoteV1(text="Hello\nworld"))
    upcasters = Upcasters()
    codec = EventCodec.for_events([NoteAdded], tmp_path, upcasters)
    # v1 resolves into v2 by Avro rules (title takes its default) until the upcaster exists
    assert codec.decode(old) == NoteAdded(title="", text="Hello\nworld")
    assert codec.decode_at(old, "t", 0, 1) == NoteAdded(title="", text="Hello\nworld")
    upcasters.register("help.notes.NoteAdded", from_version=1, function=first_line_as_title)
    assert codec.decode(old) == NoteAdded(title="Hello", text="world")
    assert codec.decode_at(old, "t", 0, 2) == NoteAdded(title="Hello", text="world")


def _with_doc(schema: dict[str, Any], doc: str) -> dict[str, Any]:
    return {**schema, "doc": doc}  # canonical form drops docs: same fingerprint


def test_schema_files_are_loaded_in_numeric_version_order(tmp_path: Path) -> None:
    schema = avro_schema(NoteV1)
    for version in (9, 10):
        _release(tmp_path, version, _with_doc(schema, f"version {version}"))
    catalog = SchemaCatalog(Upcasters())
    catalog.load_directory(tmp_path)
    # the newest release wins (v10), not the file that sorts last as text (v9); `schemas
    # check` refuses such a pair, this only makes the reading deterministic
    assert catalog.version_of(schema) == 10


def test_check_refuses_two_versions_that_share_a_fingerprint(tmp_path: Path) -> None:
    _release(tmp_path, 1, avro_schema(NoteV1))
    _release(tmp_path, 2, _with_doc(avro_schema(NoteV1), "only the doc changed"))
    _release(tmp_path, 3, avro_schema(NoteAdded))
    problems = check_schema_files([NoteAdded], tmp_path, upcasters=Upcasters())
    assert len(problems) == 1, problems
    assert "help.notes.NoteAdded.v1.avsc and help.notes.NoteAdded.v2.avsc" in problems[0]
    assert "same fingerprint" in problems[0]


def test_a_payload_in_the_current_schema_is_reused_and_an_older_one_encoded_again(
    tmp_path: Path,
) -> None:
    """A routed append's payloads (the client encoded them, the owner decoded them) are
    written as they are only when they are in the owner's current schema."""
    _release(tmp_path, 1, avro_schema(NoteV1))
    _release(tmp_path, 2, avro_schema(NoteAdded))
    codec = EventCodec.for_events([NoteAdded], tmp_path, Upcasters())
    current = codec.encode(NoteAdded(title="t", text="x"))
    assert codec.reuse_or_encode(codec.decode(current), current) is current
    old = EventCodec.for_events([NoteV1]).encode(NoteV1(text="x"))
    event = codec.decode(old)
    again = codec.reuse_or_encode(event, old)
    assert again != old
    assert again == codec.encode(event)
