"""CloudEvents Kafka binding (binary mode): metadata to record headers and back."""

from __future__ import annotations

import datetime as dt

import pytest

from eventsource.codec import build_headers, parse_headers
from eventsource.codec.envelope import HeaderTemplate, header_template, utc_stamp
from eventsource.domain import EventMetadata
from eventsource.errors import DecodeError, EncodeError

META = EventMetadata(
    event_id="0b9f3a4e-7b1d-4c55-9c7a-2f4f0c1d2e3f",
    event_type="bank.account.MoneyDeposited",
    aggregate_type="bank.account",
    aggregate_id="acc-42",
    version=7,
    time=dt.datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=dt.UTC),
    correlation_id="corr-1",
    causation_id="cause-9",
)


def test_headers_follow_the_cloudevents_kafka_binary_binding() -> None:
    headers = build_headers(META, source="/bank/accounts", traceparent="00-abc-def-01")
    assert headers == [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"0b9f3a4e-7b1d-4c55-9c7a-2f4f0c1d2e3f"),
        ("ce_source", b"/bank/accounts"),
        ("ce_type", b"bank.account.MoneyDeposited"),
        ("ce_subject", b"acc-42"),
        ("ce_time", b"2024-05-01T12:30:15.123456Z"),
        ("content-type", b"application/avro"),
        ("ce_sequence", b"7"),
        ("ce_aggregatetype", b"bank.account"),
        ("ce_correlationid", b"corr-1"),
        ("ce_causationid", b"cause-9"),
        ("traceparent", b"00-abc-def-01"),
    ]


def test_headers_round_trip_to_equal_metadata() -> None:
    assert parse_headers(build_headers(META, source="/bank")) == META


def test_optional_ids_are_omitted_when_unset_and_parse_back_as_none() -> None:
    meta = EventMetadata(**{**_fields(META), "correlation_id": None, "causation_id": None})
    headers = build_headers(meta, source="/bank")
    names = [name for name, _ in headers]
    assert "ce_correlationid" not in names
    assert "ce_causationid" not in names
    assert parse_headers(headers) == meta


def test_time_in_another_zone_is_written_as_the_same_instant_in_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    meta = EventMetadata(**{**_fields(META), "time": dt.datetime(2024, 5, 1, 14, 0, tzinfo=paris)})
    headers = dict(build_headers(meta, source="/bank"))
    assert headers["ce_time"] == b"2024-05-01T12:00:00.000000Z"
    assert parse_headers(list(headers.items())).time == meta.time


def test_naive_metadata_time_is_refused() -> None:
    meta = EventMetadata(**{**_fields(META), "time": dt.datetime(2024, 5, 1)})
    with pytest.raises(EncodeError, match=r"acc-42.*version 7.*naive"):
        build_headers(meta, source="/bank")


@pytest.mark.parametrize(
    "missing", ["ce_id", "ce_type", "ce_subject", "ce_time", "ce_sequence", "ce_aggregatetype"]
)
def test_missing_header_is_a_decode_error_naming_it(missing: str) -> None:
    headers = [(n, v) for n, v in build_headers(META, source="/bank") if n != missing]
    with pytest.raises(DecodeError, match=missing):
        parse_headers(headers)


def test_no_headers_at_all_names_every_missing_header() -> None:
    with pytest.raises(DecodeError, match="ce_id, ce_type, ce_subject") as caught:
        parse_headers(None)
    assert "not written by an eventsource producer" in str(caught.value)


def test_null_header_value_counts_as_missing() -> None:
    headers = [(n, None if n == "ce_subject" else v) for n, v in build_headers(META, source="/")]
    with pytest.raises(DecodeError, match="ce_subject"):
        parse_headers(headers)


def test_last_value_of_a_repeated_header_wins() -> None:
    headers = [*build_headers(META, source="/bank"), ("ce_sequence", b"8")]
    assert parse_headers(headers).version == 8


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("ce_sequence", b"seven", "decimal number"),
        ("ce_sequence", b"-1", "decimal number"),
        ("ce_sequence", "\u0661".encode(), "decimal number"),  # an Arabic-Indic digit one
        ("ce_time", b"yesterday", "RFC 3339"),
        ("ce_time", b"2024-05-01T12:00:00", "RFC 3339"),
        ("ce_specversion", b"2.0", "CloudEvents 1.x"),
        ("ce_id", b"\xff\xfe", "not valid UTF-8"),
    ],
)
def test_malformed_header_values_are_decode_errors_naming_the_header(
    name: str, value: bytes, complaint: str
) -> None:
    headers = [*build_headers(META, source="/bank"), (name, value)]
    with pytest.raises(DecodeError, match=complaint) as caught:
        parse_headers(headers)
    assert name in str(caught.value)


def _fields(meta: EventMetadata) -> dict[str, object]:
    return {name: getattr(meta, name) for name in meta.__slots__}


def test_a_later_cloudevents_1x_minor_version_is_accepted() -> None:
    headers = [*build_headers(META, source="/bank"), ("ce_specversion", b"1.1")]
    assert parse_headers(headers) == META


def test_header_template_writes_exactly_what_build_headers_writes() -> None:
    template = HeaderTemplate(
        source="/bank/accounts", event_type=META.event_type, aggregate_type=META.aggregate_type
    )
    headers = template.headers(
        META.event_id.encode(),
        META.aggregate_id.encode(),
        utc_stamp(META.time),
        META.version,
        META.correlation_id,
        META.causation_id,
    )
    assert headers == build_headers(META, source="/bank/accounts")
    assert parse_headers(headers) == META


def test_header_template_omits_unset_correlation_and_causation_ids() -> None:
    template = header_template("/bank", "bank.account.MoneyDeposited", "bank.account")
    headers = template.headers(b"id-1", b"acc-1", b"2024-05-01T12:00:00.000000Z", 3)
    assert [name for name, _ in headers] == [
        "ce_specversion",
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_subject",
        "ce_time",
        "content-type",
        "ce_sequence",
        "ce_aggregatetype",
    ]
    assert dict(headers)["ce_sequence"] == b"3"


def test_header_templates_are_shared_per_source_event_type_and_aggregate_type() -> None:
    one = header_template("/bank", "bank.account.MoneyDeposited", "bank.account")
    assert header_template("/bank", "bank.account.MoneyDeposited", "bank.account") is one
    assert header_template("/other", "bank.account.MoneyDeposited", "bank.account") is not one


def test_utc_stamp_renders_rfc3339_utc_with_microseconds() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    assert utc_stamp(dt.datetime(2024, 5, 1, 14, 0, 0, 7, tzinfo=paris)) == (
        b"2024-05-01T12:00:00.000007Z"
    )


def test_utc_stamp_refuses_a_naive_time() -> None:
    with pytest.raises(EncodeError, match="naive"):
        utc_stamp(dt.datetime(2024, 5, 1))
