"""Events: immutable, typed facts that an aggregate emits."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from eventsource.errors import DomainError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAMESPACE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class Event(BaseModel):
    """Base class of every domain event.

    Subclasses are frozen pydantic models. Their Avro full name, which is also the
    CloudEvents ``ce_type``, is ``<__namespace__>.<__event_name__>``. Both default to the
    module and the class name; set them explicitly so that moving code never renames an
    event that is already stored::

        class Deposited(Event):
            __namespace__ = "bank.account"
            amount: Decimal
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    __namespace__: ClassVar[str]
    __event_name__: ClassVar[str]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "__event_name__" not in cls.__dict__:
            cls.__event_name__ = cls.__name__
        if "__namespace__" not in cls.__dict__:
            cls.__namespace__ = cls.__module__
        if not _NAME.match(cls.__event_name__):
            raise DomainError(
                f"event name {cls.__event_name__!r} of {cls.__qualname__} is not a valid "
                "Avro name: use letters, digits and underscores"
            )
        if not _NAMESPACE.match(cls.__namespace__):
            raise DomainError(
                f"namespace {cls.__namespace__!r} of {cls.__qualname__} is not a valid "
                "Avro namespace: dot-separated names of letters, digits and underscores"
            )

    @classmethod
    def event_type(cls) -> str:
        """The stable full name of this event type (Avro full name, CloudEvents type)."""
        return f"{cls.__namespace__}.{cls.__event_name__}"
