"""A projection that stops in the middle of a replay until a signal interrupts it: a
replay the test can interrupt mid-way however fast or loaded the machine is.

``GATED_REPLAY_DIR`` holds the handshake: once ``GATED_REPLAY_AFTER`` events have been
handled, ``reached`` is created and the handler waits (at most five minutes) for the
signal, which arrives as ``KeyboardInterrupt`` inside the open batch. Every batch committed
before it holds the events before the gate; the open batch rolls back.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from eventsource.projection import Context
from examples.bank.projections import AccountBalances

__all__ = ["GatedBalances"]

_GATE_WAIT_S = 300.0
_handled = 0


def _gate() -> None:
    global _handled
    _handled += 1
    if _handled != int(os.environ["GATED_REPLAY_AFTER"]):
        return
    (Path(os.environ["GATED_REPLAY_DIR"]) / "reached").touch()
    deadline = time.monotonic() + _GATE_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(0.05)
    raise RuntimeError(f"no signal came within {_GATE_WAIT_S}s of reaching the gate")


class GatedBalances(AccountBalances):
    """:class:`AccountBalances` (same tables) whose handlers stop at the gate."""

    def _write(
        self, ctx: Context, delta_cents: int, owner: str | None = None, closed: bool = False
    ) -> None:
        _gate()
        super()._write(ctx, delta_cents, owner, closed)
