"""The history gate: every released version's stored sample decodes into today's models."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import Field

from eventsource.codec import EventCodec, write_schema_files
from eventsource.codec.upcasting import Datum, Upcasters
from eventsource.domain import Event
from eventsource.errors import SchemaError
from eventsource.testing.history import assert_history_decodes, record_samples
from examples.bank.domain import AccountClosed, AccountOpened, MoneyDeposited, MoneyWithdrawn

REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
BANK_EVENTS = (AccountOpened, MoneyDeposited, MoneyWithdrawn, AccountClosed)


def test_the_repository_bank_history_decodes_into_todays_models() -> None:
    codec = EventCodec.for_events(BANK_EVENTS, schema_dir=REPO_SCHEMAS)
    decoded = assert_history_decodes(
        REPO_SCHEMAS / "samples",
        codec,
        schema_dir=REPO_SCHEMAS,
        expected={"bank.account.MoneyDeposited.v1.bin": MoneyDeposited(amount=Decimal("120.50"))},
    )
    assert decoded["bank.account.AccountOpened.v1.bin"] == AccountOpened(
        owner="Ada Lovelace", currency="GBP"
    )


class ReadingV1(Event):
    __namespace__ = "meter"
    __event_name__ = "Reading"
    watt_hours: int


class ReadingV2(Event):  # unit changed: an upcaster's job
    __namespace__ = "meter"
    __event_name__ = "Reading"
    kwh: Decimal = Field(max_digits=12, decimal_places=3)


def wh_to_kwh(data: Datum) -> Datum:
    return {"kwh": Decimal(data["watt_hours"]).scaleb(-3)}


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, Path]:
    """Schemas and samples of a meter reading released as v1, then v2."""
    schemas, samples = tmp_path / "schemas", tmp_path / "schemas" / "samples"
    write_schema_files([ReadingV1], schemas)
    record_samples([ReadingV1(watt_hours=1500)], samples, schema_dir=schemas)
    write_schema_files([ReadingV2], schemas)
    record_samples([ReadingV2(kwh=Decimal("2.250"))], samples, schema_dir=schemas)
    return schemas, samples


def test_samples_are_named_after_their_released_version(history: tuple[Path, Path]) -> None:
    _, samples = history
    assert sorted(p.name for p in samples.iterdir()) == [
        "meter.Reading.v1.bin",
        "meter.Reading.v2.bin",
    ]


def test_an_evolved_history_decodes_through_its_upcaster(history: tuple[Path, Path]) -> None:
    schemas, samples = history
    upcasters = Upcasters()
    upcasters.register("meter.Reading", from_version=1, function=wh_to_kwh)
    codec = EventCodec.for_events([ReadingV2], schemas, upcasters)
    decoded = assert_history_decodes(samples, codec, schema_dir=schemas)
    assert decoded == {
        "meter.Reading.v1.bin": ReadingV2(kwh=Decimal("1.500")),
        "meter.Reading.v2.bin": ReadingV2(kwh=Decimal("2.250")),
    }


def test_a_version_that_no_longer_decodes_fails_the_gate_naming_the_sample(
    history: tuple[Path, Path],
) -> None:
    schemas, samples = history
    codec = EventCodec.for_events([ReadingV2], schemas, Upcasters())  # upcaster forgotten
    with pytest.raises(
        AssertionError, match=r"meter\.Reading\.v1\.bin no longer decodes"
    ) as caught:
        assert_history_decodes(samples, codec, schema_dir=schemas)
    assert "kwh" in str(caught.value)
    assert "v2.bin" not in str(caught.value)


def test_a_released_version_without_a_sample_fails_the_gate(history: tuple[Path, Path]) -> None:
    schemas, samples = history
    (samples / "meter.Reading.v1.bin").unlink()
    codec = EventCodec.for_events([ReadingV2], schemas, Upcasters())
    with pytest.raises(AssertionError, match=r"meter\.Reading\.v1\.avsc has no sample"):
        assert_history_decodes(samples, codec, schema_dir=schemas)


def test_a_sample_decoding_to_another_value_fails_the_gate(history: tuple[Path, Path]) -> None:
    schemas, samples = history
    upcasters = Upcasters()
    upcasters.register("meter.Reading", from_version=1, function=wh_to_kwh)
    codec = EventCodec.for_events([ReadingV2], schemas, upcasters)
    with pytest.raises(AssertionError, match="expected ReadingV2"):
        assert_history_decodes(
            samples, codec, expected={"meter.Reading.v1.bin": ReadingV2(kwh=Decimal("1500"))}
        )


def test_recorded_samples_are_never_overwritten(history: tuple[Path, Path]) -> None:
    schemas, samples = history
    before = (samples / "meter.Reading.v2.bin").read_bytes()
    assert record_samples([ReadingV2(kwh=Decimal("9"))], samples, schema_dir=schemas) == []
    assert (samples / "meter.Reading.v2.bin").read_bytes() == before


def test_an_unreleased_model_cannot_record_a_sample(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="run `eventsource schemas generate`"):
        record_samples([ReadingV1(watt_hours=1)], tmp_path / "samples", schema_dir=tmp_path)


def test_a_missing_sample_directory_fails_the_gate(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="does not exist"):
        assert_history_decodes(tmp_path / "nope", EventCodec.for_events([ReadingV1]))
