"""Given / when / then specifications for aggregates, in memory, in microseconds.

::

    AggregateSpec(Account).given(AccountOpened(owner="ann")).when(
        lambda account: account.deposit(Decimal("5"))
    ).then(MoneyDeposited(amount=Decimal("5")))

``given`` is the history (folded with ``@apply``, never through command methods), ``when``
is the command under test, and the ``then*`` methods assert on its outcome: the events it
emitted, the error it raised, or the state it left. The command runs once, lazily, at the
first ``then*`` call, so ``when`` can never raise in the middle of a chain. Assertion
messages list expected and actual events side by side and name the first difference.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from eventsource.domain import Aggregate, Event

A = TypeVar("A", bound=Aggregate)

__all__ = ["AggregateSpec"]


@dataclass(frozen=True, slots=True)
class _Outcome(Generic[A]):
    aggregate: A
    emitted: tuple[Event, ...]
    error: BaseException | None


class AggregateSpec(Generic[A]):
    """A specification of one command on one aggregate type.

    ``given`` and ``when`` return new specs, so a partly built spec can be shared by
    several tests; the ``then*`` methods return the spec itself so assertions chain.
    """

    def __init__(
        self,
        aggregate_type: type[A],
        aggregate_id: str = "spec-1",
        *,
        _history: tuple[Event, ...] = (),
        _command: Callable[[A], object] | None = None,
    ) -> None:
        self.aggregate_type = aggregate_type
        self.aggregate_id = aggregate_id
        self.history = _history
        self._command = _command
        self._outcome: _Outcome[A] | None = None

    # building ---------------------------------------------------------------------------
    def given(self, *events: Event) -> AggregateSpec[A]:
        """Events already recorded for the aggregate, oldest first (adds to earlier ones)."""
        _require_events("given", events)
        return AggregateSpec(
            self.aggregate_type,
            self.aggregate_id,
            _history=self.history + events,
            _command=self._command,
        )

    def when(self, command: Callable[[A], object]) -> AggregateSpec[A]:
        """The command under test: a callable that receives the rehydrated aggregate."""
        if not callable(command):
            raise TypeError(
                f"when() takes a callable such as lambda a: a.deposit(...), got {command!r}"
            )
        return AggregateSpec(
            self.aggregate_type, self.aggregate_id, _history=self.history, _command=command
        )

    # asserting --------------------------------------------------------------------------
    def then(self, *expected: Event) -> AggregateSpec[A]:
        """Assert the command succeeded and emitted exactly ``expected``, in order."""
        _require_events("then", expected)
        outcome = self._run()
        if outcome.error is not None:
            raise AssertionError(
                f"expected the command to emit {_format_events(expected, indent='')}, "
                f"but it raised {_describe_error(outcome.error)}"
            ) from outcome.error
        if tuple(expected) != outcome.emitted:
            raise AssertionError(_events_differ(expected, outcome.emitted))
        return self

    def then_nothing(self) -> AggregateSpec[A]:
        """Assert the command succeeded without emitting any event."""
        return self.then()

    def then_raises(
        self, error_type: type[BaseException], *, match: str | None = None
    ) -> AggregateSpec[A]:
        """Assert the command raised ``error_type`` (``match``: regex searched in its message)."""
        if not (isinstance(error_type, type) and issubclass(error_type, BaseException)):
            raise TypeError(f"then_raises() takes an exception class, got {error_type!r}")
        outcome = self._run()
        error = outcome.error
        if error is None:
            raise AssertionError(
                f"expected the command to raise {error_type.__name__}, but it succeeded and "
                f"emitted {_format_events(outcome.emitted, indent='')}"
            )
        if not isinstance(error, error_type):
            raise AssertionError(
                f"expected the command to raise {error_type.__name__}, "
                f"but it raised {_describe_error(error)}"
            ) from error
        if match is not None and not re.search(match, str(error)):
            raise AssertionError(
                f"{error_type.__name__} was raised, but its message {str(error)!r} "
                f"does not match {match!r}"
            ) from error
        return self

    def then_state(
        self, check: Callable[[A], bool | None], description: str = ""
    ) -> AggregateSpec[A]:
        """Assert on the aggregate after the command (emitted events applied).

        ``check`` returns a bool, or asserts itself and returns None. Without ``when``, the
        state after ``given`` is checked.
        """
        outcome = self._run()
        if outcome.error is not None:
            raise AssertionError(
                "expected to check the state, but the command raised "
                f"{_describe_error(outcome.error)}"
            ) from outcome.error
        if check(outcome.aggregate) is False:
            what = f" ({description})" if description else ""
            raise AssertionError(
                f"state check{what} failed; the aggregate is {_describe_state(outcome.aggregate)}"
            )
        return self

    @property
    def aggregate(self) -> A:
        """The aggregate after the command (runs it if no ``then*`` did yet)."""
        return self._run().aggregate

    @property
    def emitted(self) -> tuple[Event, ...]:
        """The events the command emitted."""
        return self._run().emitted

    # running ----------------------------------------------------------------------------
    def _run(self) -> _Outcome[A]:
        if self._outcome is None:
            aggregate = self.aggregate_type.rehydrate(self.aggregate_id, self.history)
            error: BaseException | None = None
            if self._command is not None:
                try:
                    self._command(aggregate)
                except Exception as exc:  # the outcome under test, asserted by then_raises
                    error = exc
            emitted = aggregate.pending_events
            self._outcome = _Outcome(aggregate, emitted if error is None else (), error)
        return self._outcome


def _require_events(method: str, events: Sequence[object]) -> None:
    for event in events:
        if not isinstance(event, Event):
            raise TypeError(
                f"{method}() takes Event instances, got {event!r}: pass events such as "
                "AccountOpened(owner='ann'), not classes or commands"
            )


def _format_events(events: Sequence[Event], indent: str = "    ") -> str:
    if not events:
        return "no events"
    if not indent:
        return "[" + ", ".join(repr(e) for e in events) + "]"
    return "\n".join(f"{indent}{i}. {e!r}" for i, e in enumerate(events, 1))


def _events_differ(expected: Sequence[Event], actual: Sequence[Event]) -> str:
    lines = [
        "the command emitted other events than expected",
        "  expected:",
        _format_events(expected),
        "  actual:",
        _format_events(actual),
    ]
    for index, (want, got) in enumerate(zip(expected, actual, strict=False), 1):
        if want != got:
            lines.append(f"  first difference at #{index}: {_difference(want, got)}")
            break
    else:
        lines.append(f"  expected {len(expected)} event(s), the command emitted {len(actual)}")
    return "\n".join(lines)


def _difference(want: Event, got: Event) -> str:
    if type(want) is not type(got):
        return f"expected a {type(want).__name__}, got a {type(got).__name__}"
    wanted, gotten = want.model_dump(), got.model_dump()
    fields = [name for name in wanted if wanted[name] != gotten.get(name)]
    return "; ".join(
        f"{name}: expected {wanted[name]!r}, actual {gotten.get(name)!r}" for name in fields
    )


def _describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def _describe_state(aggregate: Aggregate) -> str:
    state: dict[str, Any] = {k: v for k, v in vars(aggregate).items() if not k.startswith("_")}
    fields = ", ".join(f"{k}={v!r}" for k, v in state.items())
    return f"{type(aggregate).__name__}({fields})"
