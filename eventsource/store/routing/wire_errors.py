"""Typed errors across the routing wire: the owner's error as a reply, and back."""

from __future__ import annotations

from typing import Any

from eventsource import errors
from eventsource.store.routing.wire_types import ErrorReply

__all__ = ["error_from_reply", "error_reply"]


def error_reply(request_id: str, server: str, error: BaseException) -> ErrorReply:
    """The reply for an error the owner raised while executing a request."""
    if isinstance(error, errors.ConcurrencyError):
        fields: dict[str, Any] = {
            "aggregate_id": error.aggregate_id,
            "expected": error.expected,
            "actual": error.actual,
        }
        return ErrorReply(request_id, server, "ConcurrencyError", str(error), False, fields)
    if isinstance(error, errors.EventSourceError):
        return ErrorReply(request_id, server, type(error).__name__, str(error), error.retriable)
    if isinstance(error, ValueError | TypeError):
        return ErrorReply(request_id, server, type(error).__name__, str(error))
    # Anything else is a bug at the owner, raised at an unknown point of the append.
    return ErrorReply(
        request_id,
        server,
        "UncertainCommitError",
        f"the owner {server} failed with {type(error).__name__}: {error}; the append may "
        "or may not be committed: reload the aggregate before retrying",
    )


def error_from_reply(reply: ErrorReply) -> Exception:
    """The exception a client raises for an error reply: the same typed error."""
    if reply.error_type == "ConcurrencyError":
        f = reply.fields
        if (
            isinstance(f.get("aggregate_id"), str)
            and isinstance(f.get("expected"), int)
            and isinstance(f.get("actual"), int)
        ):
            return errors.ConcurrencyError(f["aggregate_id"], f["expected"], f["actual"])
    if reply.error_type in ("ValueError", "TypeError"):
        return (
            ValueError(reply.message)
            if reply.error_type == "ValueError"
            else TypeError(reply.message)
        )
    cls = getattr(errors, reply.error_type, None)
    if (
        reply.error_type in errors.__all__
        and isinstance(cls, type)
        and issubclass(cls, errors.EventSourceError)
        and cls is not errors.ConcurrencyError
    ):
        if issubclass(cls, errors.DecodeError):
            return cls(reply.message)
        return cls(reply.message, retriable=reply.retriable)
    return errors.StoreError(
        f"the owner {reply.server} answered with {reply.error_type}: {reply.message}",
        retriable=reply.retriable,
    )
