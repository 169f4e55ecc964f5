"""A projection module whose import blocks until the test says so: a service start-up
that is still loading the user's code when a signal arrives.

``SLOW_START_DIR`` holds the handshake files: ``importing`` is created when the import
begins, and the import waits until ``release`` exists.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from examples.bank.projections import AccountBalances

_dir = Path(os.environ["SLOW_START_DIR"])
(_dir / "importing").touch()
while not (_dir / "release").exists():
    time.sleep(0.05)

__all__ = ["AccountBalances"]
