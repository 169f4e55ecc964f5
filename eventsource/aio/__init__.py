"""asyncio facade over the threaded store: ``AsyncRepository`` and ``wait_for_positions``.

The store's core stays threaded (librdkafka and the partition writers are concurrent
already); this package only bridges its futures to the running event loop. See the how-to
"Async services" for the outcomes and what a cancelled ``await`` means.
"""

from eventsource.aio.bridge import await_future
from eventsource.aio.ports import Loader
from eventsource.aio.repository import AsyncRepository
from eventsource.aio.wait import wait_for_positions

__all__ = ["AsyncRepository", "Loader", "await_future", "wait_for_positions"]
