"""Schema files: one .avsc per event type and version, never rewritten once released."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import Field

from eventsource.codec import EventCodec, avro_schema, check_schema_files, write_schema_files
from eventsource.codec.files import assert_schema_files_current, render_schema
from eventsource.domain import Event
from eventsource.errors import SchemaDriftError, SchemaError
from examples.bank.domain import AccountClosed, AccountOpened, MoneyDeposited, MoneyWithdrawn

BANK_EVENTS = (AccountOpened, MoneyDeposited, MoneyWithdrawn, AccountClosed)
REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


class TicketV1(Event):
    __namespace__ = "help.desk"
    __event_name__ = "TicketOpened"
    title: str


class TicketV2(Event):  # adds a field with a default: BACKWARD compatible
    __namespace__ = "help.desk"
    __event_name__ = "TicketOpened"
    title: str
    priority: int = 3


class TicketV3(Event):  # adds a field without a default: old data cannot be read
    __namespace__ = "help.desk"
    __event_name__ = "TicketOpened"
    title: str
    priority: int = 3
    owner: str


def test_first_generation_writes_v1_as_sorted_pretty_json_with_a_newline(tmp_path: Path) -> None:
    written = write_schema_files([TicketV1], tmp_path)
    assert written == [tmp_path / "help.desk.TicketOpened.v1.avsc"]
    text = written[0].read_text()
    assert text == json.dumps(avro_schema(TicketV1), indent=2, sort_keys=True) + "\n"


def test_unchanged_models_write_nothing(tmp_path: Path) -> None:
    write_schema_files([TicketV1], tmp_path)
    assert write_schema_files([TicketV1], tmp_path) == []


def test_changed_model_gets_the_next_version_and_old_files_stay_untouched(
    tmp_path: Path,
) -> None:
    (v1,) = write_schema_files([TicketV1], tmp_path)
    released = v1.read_text()
    assert write_schema_files([TicketV2], tmp_path) == [tmp_path / "help.desk.TicketOpened.v2.avsc"]
    assert write_schema_files([TicketV3], tmp_path) == [tmp_path / "help.desk.TicketOpened.v3.avsc"]
    assert v1.read_text() == released


def test_versions_compare_numerically_not_alphabetically(tmp_path: Path) -> None:
    for version in (1, 2, 10):
        (tmp_path / f"help.desk.TicketOpened.v{version}.avsc").write_text(
            render_schema(avro_schema(TicketV1 if version < 10 else TicketV2))
        )
    assert write_schema_files([TicketV2], tmp_path) == []
    assert write_schema_files([TicketV3], tmp_path)[0].name == "help.desk.TicketOpened.v11.avsc"


def test_the_repository_holds_the_current_bank_schemas() -> None:
    assert check_schema_files(BANK_EVENTS, REPO_SCHEMAS) == []
    assert (REPO_SCHEMAS / "bank.account.MoneyDeposited.v1.avsc").is_file()


def test_the_repository_schema_directory_decodes_bank_events() -> None:
    codec = EventCodec.for_events(BANK_EVENTS, schema_dir=REPO_SCHEMAS)
    event = MoneyDeposited(amount=Decimal("7.70"))
    assert codec.decode(codec.encode(event)) == event


def test_check_reports_a_missing_file(tmp_path: Path) -> None:
    (problem,) = check_schema_files([TicketV1], tmp_path)
    assert "help.desk.TicketOpened: no schema file" in problem


def test_check_reports_drift_naming_the_added_field(tmp_path: Path) -> None:
    write_schema_files([TicketV1], tmp_path)
    (problem,) = check_schema_files([TicketV2], tmp_path)
    assert "help.desk.TicketOpened: field 'priority' added since" in problem
    assert "release v2" in problem


def test_check_reports_a_backward_incompatible_change(tmp_path: Path) -> None:
    write_schema_files([TicketV2], tmp_path)
    problems = check_schema_files([TicketV3], tmp_path)
    assert any("field 'owner' added" in p for p in problems)
    incompatible = [p for p in problems if "not BACKWARD compatible" in p]
    assert incompatible and "owner" in incompatible[0]


def test_check_reports_a_changed_decimal_scale_as_incompatible(tmp_path: Path) -> None:
    class Paid(Event):
        __namespace__ = "shop"
        amount: Decimal = Field(max_digits=10, decimal_places=2)

    class PaidInMills(Event):
        __namespace__ = "shop"
        __event_name__ = "Paid"
        amount: Decimal = Field(max_digits=10, decimal_places=3)

    write_schema_files([Paid], tmp_path)
    problems = check_schema_files([PaidInMills], tmp_path)
    assert any("not BACKWARD compatible" in p and "misread" in p for p in problems)


def test_assert_current_raises_schema_drift_listing_the_problems(tmp_path: Path) -> None:
    write_schema_files([TicketV1], tmp_path)
    assert_schema_files_current([TicketV1], tmp_path)
    with pytest.raises(SchemaDriftError, match="priority"):
        assert_schema_files_current([TicketV2], tmp_path)


def test_unreadable_schema_file_is_reported_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "help.desk.TicketOpened.v1.avsc").write_text("{oops")
    with pytest.raises(SchemaError, match=r"help.desk.TicketOpened.v1.avsc"):
        write_schema_files([TicketV1], tmp_path)
