"""The error tree: one root, documented, retriable where retrying can help."""

from __future__ import annotations

import inspect

from eventsource import errors


def _error_classes() -> list[type[errors.EventSourceError]]:
    return [
        obj
        for _, obj in inspect.getmembers(errors, inspect.isclass)
        if issubclass(obj, errors.EventSourceError)
    ]


def test_every_error_is_drawn_in_the_module_docstring() -> None:
    doc = errors.__doc__ or ""
    missing = [cls.__name__ for cls in _error_classes() if cls.__name__ not in doc]
    assert missing == []


def test_every_error_is_exported() -> None:
    assert sorted(errors.__all__) == sorted(cls.__name__ for cls in _error_classes())


def test_concurrency_error_says_what_and_what_to_do() -> None:
    err = errors.ConcurrencyError("acc-1", expected=3, actual=5)
    assert "acc-1" in str(err) and "version 5" in str(err) and "expected 3" in str(err)
    assert "reload" in str(err)
    assert not err.retriable


def test_decode_error_can_be_located_at_a_kafka_position() -> None:
    err = errors.BadMagicError("payload starts with 0x00 0x01")
    located = err.at("bank.account.events", 2, 41)
    assert isinstance(located, errors.BadMagicError)
    assert str(located).endswith("(at bank.account.events[2]@41)")
    assert (located.topic, located.partition, located.offset) == ("bank.account.events", 2, 41)


def test_retriable_flags() -> None:
    assert errors.NotOwnerError("x").retriable
    assert errors.StoreUnavailableError("x").retriable
    assert not errors.FencedError("x").retriable
    assert errors.FencedError("x", retriable=True).retriable
