"""`check_schema_files`: every class of breaking change fails naming its field; compatible
changes pass; the compatibility mode decides which direction counts."""

from __future__ import annotations

import enum
from pathlib import Path

import pytest

from eventsource.codec import EventCodec, write_schema_files
from eventsource.codec.compatibility import CompatibilityMode, read_problems
from eventsource.codec.files import check_schema_files
from eventsource.codec.upcasting import Datum, Upcasters
from eventsource.domain import Event
from eventsource.errors import SchemaError

NS = "help.desk"


def released(tmp_path: Path, *models: type[Event]) -> Path:
    """Release each model in turn, as `eventsource schemas generate` would over time."""
    for model in models:
        write_schema_files([model], tmp_path)
    return tmp_path


def check(
    model: type[Event],
    directory: Path,
    mode: str = "BACKWARD",
    upcasters: Upcasters | None = None,
) -> list[str]:
    return check_schema_files([model], directory, mode, upcasters or Upcasters())


class Ticket(Event):
    __namespace__ = NS
    title: str
    priority: int = 3


# -- breaking changes -----------------------------------------------------------------------


class TicketWithOwner(Event):  # a field added without a default
    __namespace__ = NS
    __event_name__ = "Ticket"
    title: str
    priority: int = 3
    owner: str


class TicketWithoutTitle(Event):  # `title` (no default) removed
    __namespace__ = NS
    __event_name__ = "Ticket"
    priority: int = 3


class TicketWithTextPriority(Event):  # `priority` long -> string
    __namespace__ = NS
    __event_name__ = "Ticket"
    title: str
    priority: str = "3"


class Severity(enum.StrEnum):
    LOW = "LOW"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"


class FewerSeverities(enum.StrEnum):
    LOW = "LOW"
    HIGH = "HIGH"


FewerSeverities.__name__ = "Severity"  # the same Avro enum, one symbol fewer


class Incident(Event):
    __namespace__ = NS
    severity: Severity


class IncidentWithFewerSeverities(Event):
    __namespace__ = NS
    __event_name__ = "Incident"
    severity: FewerSeverities


def test_a_field_added_without_default_breaks_backward_naming_it(tmp_path: Path) -> None:
    problems = check(TicketWithOwner, released(tmp_path, Ticket, TicketWithOwner))
    assert problems == [
        "help.desk.Ticket: not BACKWARD compatible with help.desk.Ticket.v1.avsc: field "
        "'owner': has no default, so data written without it cannot be read; give it a default"
    ]


@pytest.mark.parametrize("mode", ["FORWARD", "FULL", "FORWARD_TRANSITIVE", "FULL_TRANSITIVE"])
def test_a_field_removed_without_default_breaks_forward_naming_it(
    tmp_path: Path, mode: str
) -> None:
    problems = check(TicketWithoutTitle, released(tmp_path, Ticket, TicketWithoutTitle), mode)
    assert len(problems) == 1
    assert f"not {mode} compatible with help.desk.Ticket.v1.avsc" in problems[0]
    assert "field 'title': has no default" in problems[0]


def test_backward_allows_removing_a_field_new_readers_ignore_it(tmp_path: Path) -> None:
    assert check(TicketWithoutTitle, released(tmp_path, Ticket, TicketWithoutTitle)) == []


def test_a_type_changed_incompatibly_breaks_naming_the_field(tmp_path: Path) -> None:
    (problem,) = check(TicketWithTextPriority, released(tmp_path, Ticket, TicketWithTextPriority))
    assert "field 'priority': type changed incompatibly" in problem
    assert "reader type: string not compatible with writer type: long" in problem


def test_an_enum_symbol_removed_without_default_breaks_naming_the_field(tmp_path: Path) -> None:
    directory = released(tmp_path, Incident, IncidentWithFewerSeverities)
    (problem,) = check(IncidentWithFewerSeverities, directory)
    assert "help.desk.Incident: not BACKWARD compatible with help.desk.Incident.v1.avsc" in problem
    assert "field 'severity': enum symbols {'CRITICAL'} are missing" in problem


class Renamed(Event):  # `Ticket` renamed, nothing says where old tickets go
    __namespace__ = NS
    title: str
    priority: int = 3


def test_an_event_renamed_without_alias_or_upcaster_fails_naming_the_old_type(
    tmp_path: Path,
) -> None:
    directory = released(tmp_path, Ticket, Renamed)
    (problem,) = check(Renamed, directory)
    assert problem.startswith("help.desk.Ticket: v1..v1 are released")
    assert "no upcaster reads its v1" in problem
    assert '@upcaster("help.desk.Ticket", from_version=1, to_type="<new name>")' in problem


def test_an_event_renamed_with_an_upcaster_passes(tmp_path: Path) -> None:
    directory = released(tmp_path, Ticket, Renamed)
    upcasters = Upcasters()
    upcasters.register(
        "help.desk.Ticket", from_version=1, function=dict, to_type="help.desk.Renamed"
    )
    assert check(Renamed, directory, upcasters=upcasters) == []


def test_an_upcaster_that_leads_nowhere_does_not_count(tmp_path: Path) -> None:
    directory = released(tmp_path, Ticket, Renamed)
    upcasters = Upcasters()
    upcasters.register("help.desk.Ticket", from_version=1, function=dict, to_type="help.desk.Gone")
    (problem,) = check(Renamed, directory, upcasters=upcasters)
    assert "help.desk.Gone" in problem


def test_files_of_other_namespaces_are_not_orphans(tmp_path: Path) -> None:
    class Elsewhere(Event):
        __namespace__ = "other.context"
        title: str

    directory = released(tmp_path, Elsewhere, Ticket)
    assert check(Ticket, directory) == []


# -- compatible changes ---------------------------------------------------------------------


class TicketWithTags(Event):  # a field added with a default
    __namespace__ = NS
    __event_name__ = "Ticket"
    title: str
    priority: int = 3
    tags: list[str] = []


class TicketWithoutPriority(Event):  # a field that had a default, removed
    __namespace__ = NS
    __event_name__ = "Ticket"
    title: str


class TicketWithFractionalPriority(Event):  # long -> double: an Avro promotion
    __namespace__ = NS
    __event_name__ = "Ticket"
    title: str
    priority: float = 3.0


class TicketOpened(Event):  # `Ticket` renamed; the alias keeps old data readable
    __namespace__ = NS
    __aliases__ = ("Ticket",)
    title: str
    priority: int = 3


class SeverityWithDefault(enum.StrEnum):
    LOW = "LOW"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"
    UNKNOWN = "UNKNOWN"
    __avro_default__ = "UNKNOWN"


class FewerSeveritiesWithDefault(enum.StrEnum):
    LOW = "LOW"
    HIGH = "HIGH"
    UNKNOWN = "UNKNOWN"
    __avro_default__ = "UNKNOWN"


SeverityWithDefault.__name__ = "Severity"
FewerSeveritiesWithDefault.__name__ = "Severity"


class IncidentV1(Event):
    __namespace__ = NS
    __event_name__ = "Incident"
    severity: SeverityWithDefault


class IncidentV2(Event):  # CRITICAL removed: old readers and new ones map it to UNKNOWN
    __namespace__ = NS
    __event_name__ = "Incident"
    severity: FewerSeveritiesWithDefault


@pytest.mark.parametrize(
    ("old", "new", "mode"),
    [
        (Ticket, TicketWithTags, "FULL_TRANSITIVE"),
        (Ticket, TicketWithoutPriority, "FULL_TRANSITIVE"),
        (Ticket, TicketWithFractionalPriority, "BACKWARD_TRANSITIVE"),
        (Ticket, TicketOpened, "BACKWARD_TRANSITIVE"),
        (IncidentV1, IncidentV2, "FULL_TRANSITIVE"),
    ],
    ids=[
        "field-added-with-default",
        "field-with-default-removed",
        "long-to-double",
        "alias-rename",
        "enum-with-default",
    ],
)
def test_compatible_changes_pass(
    tmp_path: Path, old: type[Event], new: type[Event], mode: str
) -> None:
    assert check(new, released(tmp_path, old, new), mode) == []


def test_old_data_of_a_compatible_change_really_decodes(tmp_path: Path) -> None:
    directory = released(tmp_path, IncidentV1, IncidentV2)
    old = EventCodec.for_events([IncidentV1]).encode(
        IncidentV1(severity=SeverityWithDefault.CRITICAL)
    )
    decoded = EventCodec.for_events([IncidentV2], directory).decode(old)
    assert decoded == IncidentV2(severity=FewerSeveritiesWithDefault.UNKNOWN)


def test_an_alias_rename_decodes_old_data(tmp_path: Path) -> None:
    directory = released(tmp_path, Ticket, TicketOpened)
    old = EventCodec.for_events([Ticket]).encode(Ticket(title="printer on fire"))
    assert EventCodec.for_events([TicketOpened], directory).decode(old) == TicketOpened(
        title="printer on fire"
    )


# -- modes ----------------------------------------------------------------------------------


class TicketV3(Event):  # compatible with v2, not with v1 (v1 lacks `owner`)
    __namespace__ = NS
    __event_name__ = "Ticket"
    title: str
    priority: int = 3
    owner: str
    # a new field, so v3's canonical form (and fingerprint) differs from v2's: versions
    # that differ only in a default are refused by the check (see test_codec_versions)
    tags: list[str] = []


class TicketV2WithOwnerDefault(Event):
    __namespace__ = NS
    __event_name__ = "Ticket"
    title: str
    priority: int = 3
    owner: str = "nobody"


def test_backward_compares_with_the_previous_version_only(tmp_path: Path) -> None:
    directory = released(tmp_path, Ticket, TicketV2WithOwnerDefault)
    write_schema_files([TicketV3], directory)
    assert check(TicketV3, directory, "BACKWARD") == []
    (problem,) = check(TicketV3, directory, "BACKWARD_TRANSITIVE")
    assert "help.desk.Ticket.v1.avsc" in problem and "'owner'" in problem


def test_a_released_model_is_checked_against_the_versions_before_it(tmp_path: Path) -> None:
    directory = released(tmp_path, Ticket, TicketWithOwner)
    assert check(TicketWithOwner, directory) != []  # generate alone does not make it pass


def test_drift_and_incompatibility_are_both_reported(tmp_path: Path) -> None:
    directory = released(tmp_path, Ticket)
    problems = check(TicketWithOwner, directory)
    assert any("field 'owner' added since help.desk.Ticket.v1.avsc" in p for p in problems)
    assert any("not BACKWARD compatible" in p and "'owner'" in p for p in problems)


def test_none_checks_no_compatibility(tmp_path: Path) -> None:
    assert check(TicketWithOwner, released(tmp_path, Ticket, TicketWithOwner), "NONE") == []


def test_modes_are_case_insensitive_and_unknown_ones_are_refused(tmp_path: Path) -> None:
    directory = released(tmp_path, Ticket)
    assert check(Ticket, directory, "full_transitive") == []
    with pytest.raises(SchemaError, match="unknown compatibility mode 'SIDEWAYS'"):
        check(Ticket, directory, "SIDEWAYS")


def test_an_upcaster_answers_for_the_version_it_reads(tmp_path: Path) -> None:
    directory = released(tmp_path, Ticket, TicketWithOwner)
    upcasters = Upcasters()

    @upcasters.upcaster("help.desk.Ticket", from_version=1)
    def assign_to_triage(data: Datum) -> Datum:
        return {**data, "owner": "triage"}

    assert check(TicketWithOwner, directory, upcasters=upcasters) == []
    assert check(TicketWithOwner, directory, "FULL", upcasters) == []  # FORWARD-wise fine too


def test_mode_flags() -> None:
    assert CompatibilityMode.FULL.backward and CompatibilityMode.FULL.forward
    assert not CompatibilityMode.FULL.transitive
    assert CompatibilityMode.FORWARD_TRANSITIVE.transitive
    assert not CompatibilityMode.FORWARD.backward
    assert not CompatibilityMode.NONE.backward and not CompatibilityMode.NONE.forward


def test_nested_fields_are_named_by_their_path() -> None:
    inner_long = {"type": "record", "name": "In", "fields": [{"name": "q", "type": "long"}]}
    inner_text = {"type": "record", "name": "In", "fields": [{"name": "q", "type": "string"}]}
    reader = {
        "type": "record",
        "name": "E",
        "namespace": "n",
        "fields": [{"name": "x", "type": inner_long}],
    }
    writer = {
        "type": "record",
        "name": "E",
        "namespace": "n",
        "fields": [{"name": "x", "type": inner_text}],
    }
    (problem,) = read_problems(reader=reader, writer=writer)
    assert problem.startswith("field 'x.q': type changed incompatibly")
