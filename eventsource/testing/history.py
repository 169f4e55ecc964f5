"""The history gate: a stored sample of every released event version must decode today.

Event schemas evolve; events already on a topic do not. Keep one real payload per released
version next to the schemas (``schemas/samples/<full name>.v<N>.bin``, recorded when that
version was current) and put them under test, so a change that can no longer read old
events fails the build instead of a projection in production::

    from eventsource.testing.history import assert_history_decodes, record_samples

    # when releasing a version (after `eventsource schemas generate`):
    record_samples([MoneyDeposited(amount=Decimal("12.50"))], Path("schemas/samples"),
                   schema_dir=Path("schemas"))

    # in the test suite, forever after:
    def test_every_released_event_version_still_decodes() -> None:
        codec = EventCodec.for_events(BANK_EVENTS, schema_dir=Path("schemas"))
        assert_history_decodes(Path("schemas/samples"), codec, schema_dir=Path("schemas"))
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from eventsource.codec import EventCodec, avro_schema
from eventsource.codec.files import schema_files
from eventsource.domain import Event
from eventsource.errors import EventSourceError, SchemaError

__all__ = ["assert_history_decodes", "record_samples", "sample_name"]

_SAMPLE: Final = re.compile(r"^(?P<name>.+)\.v(?P<version>\d+)\.bin$")
_RELEASED: Final = re.compile(r"^(?P<name>.+)\.v(?P<version>\d+)\.avsc$")


def sample_name(event_type: str, version: int) -> str:
    """File name of the sample of ``event_type`` version ``version``."""
    return f"{event_type}.v{version}.bin"


def record_samples(
    events: Iterable[Event],
    directory: Path,
    *,
    schema_dir: Path,
    codec: EventCodec | None = None,
) -> list[Path]:
    """Store each event's payload as the sample of its model's released version.

    The version is that of the file in ``schema_dir`` equal to the model's schema, so the
    model must be released first (``eventsource schemas generate``); otherwise
    :class:`SchemaError`. An existing sample is never overwritten: it is history.
    Returns the files written.
    """
    items = list(events)
    codec = codec or EventCodec.for_events(dict.fromkeys(type(e) for e in items))
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for event in items:
        version = _released_version(type(event), schema_dir)
        path = directory / sample_name(type(event).event_type(), version)
        if path.exists():
            continue
        path.write_bytes(codec.encode(event))
        written.append(path)
    return written


def assert_history_decodes(
    samples_dir: Path,
    codec: EventCodec,
    *,
    schema_dir: Path | None = None,
    expected: Mapping[str, Event] | None = None,
) -> dict[str, Event]:
    """Decode every sample in ``samples_dir`` with ``codec`` (today's models and upcasters).

    Raises ``AssertionError`` listing every sample that does not decode, every released
    version in ``schema_dir`` (when given) without a sample, and every sample whose event
    differs from ``expected[file name]``. Returns the decoded events by file name.
    """
    if not samples_dir.is_dir():
        raise AssertionError(f"history gate: sample directory {samples_dir} does not exist")
    decoded: dict[str, Event] = {}
    problems: list[str] = []
    for path in sorted(samples_dir.iterdir()):
        if not _SAMPLE.match(path.name):
            continue
        try:
            decoded[path.name] = codec.decode(path.read_bytes())
        except EventSourceError as exc:
            problems.append(f"{path.name} no longer decodes: {type(exc).__name__}: {exc}")
    for name, event in (expected or {}).items():
        if name not in decoded:
            if not any(p.startswith(name) for p in problems):
                problems.append(f"{name}: expected a sample, found none in {samples_dir}")
        elif decoded[name] != event:
            problems.append(f"{name} decodes to {decoded[name]!r}, expected {event!r}")
    if schema_dir is not None:
        problems += _missing_samples(samples_dir, schema_dir)
    if problems:
        raise AssertionError(
            f"history gate: {len(problems)} problem(s) with the samples in {samples_dir}:\n"
            + "\n".join(f"- {p}" for p in problems)
        )
    return decoded


def _missing_samples(samples_dir: Path, schema_dir: Path) -> list[str]:
    missing = []
    for path in sorted(schema_dir.glob("*.v*.avsc")):
        match = _RELEASED.match(path.name)
        if match is None:
            continue
        sample = sample_name(match.group("name"), int(match.group("version")))
        if not (samples_dir / sample).is_file():
            missing.append(
                f"{path.name} has no sample {sample}: record one with record_samples while "
                "that version is current (or from a payload of it found on a topic)"
            )
    return missing


def _released_version(event_type: type[Event], schema_dir: Path) -> int:
    schema = avro_schema(event_type)
    for version, path in reversed(schema_files(event_type, schema_dir)):
        if _same(path, schema):
            return version
    raise SchemaError(
        f"{event_type.event_type()} has no released schema in {schema_dir} equal to its "
        "model: run `eventsource schemas generate` before recording its sample"
    )


def _same(path: Path, schema: dict[str, object]) -> bool:
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")) == schema)
    except ValueError:
        return False
