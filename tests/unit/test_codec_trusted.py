"""Decoding without re-validation (eventsource.codec.trusted) equals the validated path.

Every payload is decoded twice: ``decode_at`` (the trusted build when the model allows it)
and ``decode`` (fastavro, then ``model_validate``). Both must give the same event down to
the Python types of every value and the exponent of every Decimal, or fail alike.
"""

from __future__ import annotations

import datetime as dt
import enum
import io
import random
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any

import fastavro
import pytest
from pydantic import AwareDatetime, BaseModel, Field, PastDatetime, field_validator

from eventsource.codec import EventCodec
from eventsource.codec.trusted import trusted_builder
from eventsource.codec.trusted_build import _setter
from eventsource.domain import Event
from eventsource.errors import DecodeError, PayloadValidationError


class Mood(enum.StrEnum):
    CALM = "calm"
    ODD = "odd"


class Leaf(BaseModel):
    label: str
    mood: Mood
    weight: Decimal = Field(max_digits=6, decimal_places=3)


class Branch(BaseModel):
    leaves: list[Leaf]
    tags: frozenset[str] = frozenset()
    best: Leaf | None = None


class Everything(Event):
    """One field of every type the codec maps, constrained and not."""

    __namespace__ = "test.trusted"
    text: str
    count: int
    ratio: float
    flag: bool
    blob: bytes
    amount: Decimal
    money: Decimal = Field(max_digits=12, decimal_places=2)
    positive: Decimal = Field(gt=0, max_digits=18, decimal_places=2)
    bounded: int = Field(ge=-5, le=5)
    fraction: float = Field(gt=0.0, lt=1)
    name: str = Field(min_length=1, max_length=8)
    at: dt.datetime
    aware: AwareDatetime
    day: dt.date
    ident: uuid.UUID
    mood: Mood
    maybe: int | None = None
    maybe_money: Annotated[Decimal, Field(gt=0, decimal_places=2)] | None = None
    maybe_mood: Mood | None = None
    numbers: list[int] = []
    frozen: tuple[str, ...] = ()
    unique: set[int] = Field(default_factory=set, min_length=0, max_length=3)
    fixed: frozenset[Mood] = frozenset()
    seq: Sequence[Decimal] = ()
    scores: dict[str, float] = {}
    moods: Mapping[str, Mood] = {}
    branch: Branch
    branches: list[Branch] = []
    by_name: dict[str, Leaf] = {}


def _leaf(rng: random.Random) -> Leaf:
    return Leaf(
        label=rng.choice(["", "a", "ü", "x" * 30]),
        mood=rng.choice(list(Mood)),
        weight=Decimal(rng.randint(-999_999, 999_999)).scaleb(-3),
    )


def _branch(rng: random.Random) -> Branch:
    return Branch(
        leaves=[_leaf(rng) for _ in range(rng.randint(0, 3))],
        tags=frozenset(rng.sample(["a", "b", "c"], rng.randint(0, 3))),
        best=rng.choice([None, _leaf(rng)]),
    )


def _cents(rng: random.Random, digits: int) -> Decimal:
    return Decimal(rng.randint(-(10**digits) + 1, 10**digits - 1)).scaleb(-2)


def _everything(rng: random.Random) -> Everything:
    at = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
        microseconds=rng.randint(-(10**16), 10**17)
    )
    zone = dt.timezone(dt.timedelta(hours=rng.randint(-12, 12)))
    return Everything(
        text=rng.choice(["", "plain", "naïve ☃", "\x00"]),
        count=rng.choice([0, -1, 2**63 - 1, -(2**63), rng.randint(-1000, 1000)]),
        ratio=rng.choice([0.0, -0.0, 1.5, float("inf"), float("-inf"), rng.random()]),
        flag=rng.random() < 0.5,
        blob=rng.randbytes(rng.randint(0, 5)),
        amount=Decimal(rng.randint(-(10**38) + 1, 10**38 - 1)).scaleb(-9),
        money=_cents(rng, 12),
        positive=abs(_cents(rng, 18)) or Decimal("0.01"),
        bounded=rng.randint(-5, 5),
        fraction=rng.choice([0.5, 1e-300, 0.999999]),
        name=rng.choice(["a", "eightchr", "ß"]),
        at=at,
        aware=at.astimezone(zone),
        day=dt.date.fromordinal(rng.randint(1, 800_000)),
        ident=uuid.UUID(int=rng.getrandbits(128)),
        mood=rng.choice(list(Mood)),
        maybe=rng.choice([None, 7]),
        maybe_money=rng.choice([None, Decimal("0.01"), Decimal("12.50")]),
        maybe_mood=rng.choice([None, Mood.ODD]),
        numbers=[rng.randint(-9, 9) for _ in range(rng.randint(0, 4))],
        frozen=tuple(rng.choice("xyz") for _ in range(rng.randint(0, 3))),
        unique={rng.randint(0, 2) for _ in range(rng.randint(0, 3))},
        fixed=frozenset(rng.sample(list(Mood), rng.randint(0, 2))),
        seq=[_cents(rng, 5) for _ in range(rng.randint(0, 2))],
        scores={k: rng.random() for k in rng.sample("abc", rng.randint(0, 3))},
        moods={k: rng.choice(list(Mood)) for k in rng.sample("ab", rng.randint(0, 2))},
        branch=_branch(rng),
        branches=[_branch(rng) for _ in range(rng.randint(0, 2))],
        by_name={k: _leaf(rng) for k in rng.sample("pq", rng.randint(0, 2))},
    )


def shape(value: Any) -> Any:
    """A value with the exact Python type of every part, Decimal exponents and timezones."""
    if isinstance(value, BaseModel):
        return (
            type(value),
            {k: shape(v) for k, v in value.__dict__.items()},
            list(value.__dict__),  # field order
            value.__pydantic_fields_set__,
            value.__pydantic_extra__,
            value.__pydantic_private__,
        )
    if isinstance(value, Decimal):
        return (Decimal, value.as_tuple())
    if isinstance(value, dt.datetime):
        return (type(value), value, value.utcoffset(), value.tzinfo)
    if isinstance(value, list | tuple):
        return (type(value), [shape(v) for v in value])
    if isinstance(value, set | frozenset):
        return (type(value), sorted(map(repr, value)))
    if isinstance(value, dict):
        return (type(value), {k: shape(v) for k, v in value.items()})
    return (type(value), value)


@pytest.fixture(scope="module")
def codec() -> EventCodec:
    return EventCodec.for_events([Everything])


def test_every_field_type_is_trusted() -> None:
    assert trusted_builder(Everything) is not None


def test_trusted_decoding_equals_validation_for_every_field_type(codec: EventCodec) -> None:
    rng = random.Random(13)
    build = trusted_builder(Everything)
    assert build is not None
    schema = codec.catalog.writer_plan(Everything).parsed
    for _ in range(400):
        event = _everything(rng)
        payload = codec.encode(event)
        built = build(_read(schema, payload))  # never falls back to validation here
        trusted = codec.decode_at(payload, "t", 0, 0)
        validated = codec.decode(payload)  # fastavro + model_validate
        assert shape(built) == shape(trusted) == shape(validated)
        assert trusted == validated == event


def _read(schema: Any, payload: bytes) -> dict[str, Any]:
    datum: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(payload[10:]), schema, None)  # type: ignore[assignment]
    return datum


def test_built_events_are_frozen_and_dump_like_validated_ones(codec: EventCodec) -> None:
    event = _everything(random.Random(7)).model_copy(update={"blob": b"json-safe"})
    payload = codec.encode(event)
    trusted = codec.decode_at(payload, "t", 0, 0)
    validated = codec.decode(payload)
    with pytest.raises(ValueError, match="frozen"):
        trusted.text = "changed"  # type: ignore[attr-defined]
    assert trusted.model_dump() == validated.model_dump()
    assert trusted.model_dump_json() == validated.model_dump_json()
    assert repr(trusted) == repr(validated)


# -- constraints at their bounds: the trusted build and pydantic agree ------------------
class Bounds(Event):
    __namespace__ = "test.trusted"
    positive: Decimal = Field(gt=0, max_digits=5, decimal_places=2)
    small: int = Field(ge=-3, lt=3)
    unit: float = Field(gt=0, le=1.0)
    word: str = Field(min_length=2, max_length=3)
    few: list[int] = Field(min_length=1, max_length=2)
    distinct: set[int] = Field(min_length=2)


BOUND_CASES: list[tuple[str, Any]] = [
    ("positive", Decimal("0.00")),
    ("positive", Decimal("-0.01")),
    ("positive", Decimal("0.01")),
    ("positive", Decimal("999.99")),
    ("small", -4),
    ("small", -3),
    ("small", 2),
    ("small", 3),
    ("unit", 0.0),
    ("unit", 5e-324),
    ("unit", 1.0),
    ("unit", 1.0000000000000002),
    ("unit", float("nan")),
    ("word", "a"),
    ("word", "ab"),
    ("word", "abc"),
    ("word", "abcd"),
    ("few", []),
    ("few", [1, 2]),
    ("few", [1, 2, 3]),
    ("distinct", [1, 1]),
    ("distinct", [1, 2]),
]

VALID_BOUNDS = {
    "positive": Decimal("1.00"),
    "small": 0,
    "unit": 0.5,
    "word": "ok",
    "few": [1],
    "distinct": [1, 2],
}


def _datum(schema: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """The datum fastavro reads back after writing ``values`` with ``schema``."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema, dict(values))
    out.seek(0)
    datum: dict[str, Any] = fastavro.schemaless_reader(out, schema, None)  # type: ignore[assignment]
    return datum


@pytest.mark.parametrize(("field", "value"), BOUND_CASES)
def test_constraint_checks_agree_with_pydantic_at_the_bounds(field: str, value: Any) -> None:
    codec = EventCodec.for_events([Bounds])
    schema = codec.catalog.writer_plan(Bounds).parsed
    build = trusted_builder(Bounds)
    assert build is not None
    values = {**VALID_BOUNDS, field: value}
    try:
        expected: Any = Bounds.model_validate(_datum(schema, values))
    except ValueError:
        expected = None
    built = build(_datum(schema, values))
    assert (built is None) == (expected is None)
    if expected is not None:
        assert shape(built) == shape(expected)


def _payload(codec: EventCodec, event_type: type[Event], body: bytes) -> bytes:
    return codec.catalog.writer_plan(event_type).header + body


def test_a_decimal_rounded_by_the_reader_is_validated_and_refused() -> None:
    # 10**7 cents has 8 digits: fastavro rounds it to the precision (5), pydantic counts
    # the exponent and refuses; the trusted build must not accept the rounded value
    codec = EventCodec.for_events([Bounds])
    plain = {
        "type": "record",
        "name": "Bounds",
        "namespace": "test.trusted",
        "fields": [{"name": "positive", "type": "bytes"}],
    }
    head = io.BytesIO()
    fastavro.schemaless_writer(head, plain, {"positive": (10**7 + 1).to_bytes(4, "big")})
    rest = io.BytesIO()
    physical = codec.catalog.writer_plan(Bounds).physical
    fastavro.schemaless_writer(
        rest,
        physical,
        codec.catalog.writer_plan(Bounds).to_datum(
            Bounds.model_validate({**VALID_BOUNDS, "distinct": {1, 2}})
        ),
    )
    # replace the first field (positive) of a valid body by the oversized one
    valid_positive = io.BytesIO()
    fastavro.schemaless_writer(valid_positive, plain, {"positive": (100).to_bytes(1, "big")})
    body = head.getvalue() + rest.getvalue()[len(valid_positive.getvalue()) :]
    payload = _payload(codec, Bounds, body)
    with pytest.raises(PayloadValidationError, match="positive"):
        codec.decode_at(payload, "t", 0, 4)


def test_a_payload_violating_a_constraint_fails_as_before(codec: EventCodec) -> None:
    event = _everything(random.Random(3))
    bad = event.model_copy(update={"positive": Decimal("-1.00")})  # skips validation
    payload = codec.encode(bad)
    with pytest.raises(PayloadValidationError, match="positive") as caught:
        codec.decode_at(payload, "t", 2, 9)
    assert caught.value.offset == 9


# -- models the plan does not build: validation as before --------------------------------
class Checked(Event):
    __namespace__ = "test.trusted"
    word: str

    @field_validator("word")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class Patterned(Event):
    __namespace__ = "test.trusted"
    code: str = Field(pattern=r"^[A-Z]+$")


class Stripped(Event):
    __namespace__ = "test.trusted"
    model_config = {"str_strip_whitespace": True}
    word: str


class Posted(Event):
    __namespace__ = "test.trusted"
    word: str
    seen: list[str] = []

    def model_post_init(self, context: Any) -> None:
        self.seen.append(self.word)


class Past(Event):
    __namespace__ = "test.trusted"
    when: PastDatetime


class Multiple(Event):
    __namespace__ = "test.trusted"
    step: int = Field(multiple_of=5)


class StrictDecimal(Event):
    __namespace__ = "test.trusted"
    amount: Decimal = Field(strict=True, max_digits=5, decimal_places=2)


class DecimalBoundOnInt(Event):
    __namespace__ = "test.trusted"
    count: int = Field(gt=Decimal("0"))


@pytest.mark.parametrize(
    "model",
    [Checked, Patterned, Stripped, Posted, Past, Multiple, DecimalBoundOnInt, StrictDecimal],
)
def test_models_whose_validation_does_more_are_always_validated(model: type[Event]) -> None:
    assert trusted_builder(model) is None


def test_an_untrusted_model_still_decodes_through_its_validators() -> None:
    codec = EventCodec.for_events([Checked, Patterned])
    payload = codec.encode(Checked.model_construct(word="MiXeD"))
    assert codec.decode_at(payload, "t", 0, 0) == Checked(word="mixed")
    bad = codec.encode(Patterned.model_construct(code="lower"))
    with pytest.raises(DecodeError, match="code"):
        codec.decode_at(bad, "t", 0, 1)


class Node(BaseModel):
    name: str
    children: list[Node] = []


class Tree(Event):
    __namespace__ = "test.trusted"
    root: Node


def test_recursive_models_are_built_like_validated_ones() -> None:
    codec = EventCodec.for_events([Tree])
    tree = Tree(root=Node(name="a", children=[Node(name="b", children=[Node(name="c")])]))
    payload = codec.encode(tree)
    assert shape(codec.decode_at(payload, "t", 0, 0)) == shape(codec.decode(payload))


def test_a_model_the_planner_cannot_inspect_is_validated_not_an_error() -> None:
    class Odd:  # lacks pydantic's class attributes: planning fails with AttributeError
        model_fields: dict[str, Any] = {}

    assert trusted_builder(Odd) is None  # type: ignore[arg-type]


def test_the_builder_sets_each_slot_through_its_descriptor_or_else_by_name() -> None:
    class Plain:  # no slot and no instance dict descriptor named "seen": set by name
        seen: Any = None

    instance = Plain()
    _setter(Plain, "seen")(instance, 1)  # type: ignore[arg-type]
    assert vars(instance) == {"seen": 1}
    setter = _setter(Leaf, "__pydantic_extra__")
    assert setter == vars(BaseModel)["__pydantic_extra__"].__set__
