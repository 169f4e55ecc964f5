"""Futures of the grouped store: a fenced writer's failure is, for callers, a moved owner."""

from __future__ import annotations

from concurrent.futures import Future

from eventsource.errors import FencedError, NotOwnerError
from eventsource.store.port import AppendResult

__all__ = ["fenced_as_not_owner"]


def fenced_as_not_owner(
    future: Future[AppendResult], where: str, member: str
) -> Future[AppendResult]:
    """A fenced writer lost its partition to a newer owner: for callers, ``NotOwnerError``.

    A ``FencedError`` means the append was refused before its commit was requested (a
    fence *during* the commit is an ``UncertainCommitError``, passed on unchanged), so
    nothing was written and the retriable ``NotOwnerError`` (which a router retries at the
    new owner) is the whole truth.
    """
    result = _Linked(future)

    def done(f: Future[AppendResult]) -> None:
        if f.cancelled():
            Future.cancel(result)
            return
        error = f.exception()
        if isinstance(error, FencedError):
            moved = NotOwnerError(
                f"writer {member!r} lost {where} to a newer owner (fenced); nothing was "
                "written: send the command to the new owner"
            )
            moved.__cause__ = error
            result.set_exception(moved)
        elif error is not None:
            result.set_exception(error)
        else:
            result.set_result(f.result())

    future.add_done_callback(done)
    return result


class _Linked(Future[AppendResult]):
    """A future whose ``cancel()`` succeeds only if the writer's request was not started."""

    def __init__(self, inner: Future[AppendResult]) -> None:
        super().__init__()
        self._inner = inner

    def cancel(self) -> bool:
        return self._inner.cancel() and super().cancel()
