"""The bank as an HTTP service: FastAPI on uvicorn, writes through ``AsyncRepository``.

``make api`` runs it with the projector beside it; by hand::

    eventsource run examples.bank.projections:AccountBalances &   # the read model
    uvicorn --factory examples.bank.api:create_app --port 8000

Writes go to Kafka through :class:`~eventsource.aio.AsyncRepository`; reads come from the
``AccountBalances`` read model the projector keeps in SQL. HTTP semantics (see the how-to
"Async services" for the whole table):

- ``POST /accounts`` opens an account: ``201``, ``Location``, ``ETag`` (the version).
- ``POST /accounts/{id}/deposits`` and ``/withdrawals``: ``If-Match: "<version>"`` makes
  the write conditional (``412`` when the account moved on). Without it the command runs
  against the current version, retried a few times if another write races it.
  A domain rule (insufficient funds, a closed account) answers ``409``.
- Every write returns the ``Event-Positions`` header; ``GET /accounts/{id}?after=<it>``
  waits (``timeout``, default 5 s) until the read model has those events, else ``504``.

Configuration: ``EVENTSOURCE_*`` (bootstrap servers, application id, database URL as for
``eventsource run``) and ``BANK_TOPIC_PREFIX`` (topics ``<prefix>bank.account.events``).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated

from fastapi import FastAPI, Header, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import Engine, exc, text

from eventsource.aio import AsyncRepository, wait_for_positions
from eventsource.errors import (
    AggregateNotFoundError,
    ConcurrencyError,
    DomainError,
    StoreUnavailableError,
    UncertainCommitError,
    WaitTimeoutError,
)
from eventsource.kafka.config import KafkaSettings
from eventsource.projection.store import create_read_model_engine
from eventsource.store.kafka import KafkaEventStore
from eventsource.store.port import AppendResult
from examples.bank.api_http import (
    POSITIONS_HEADER,
    etag,
    expected_version,
    format_positions,
    parse_positions,
    problem,
)
from examples.bank.domain import Account
from examples.bank.projections import AccountBalances

__all__ = ["create_app"]

DEFAULT_DATABASE_URL = "sqlite:///.eventsource/readmodels.db"
RACE_RETRIES = 5
"""Attempts of a write without If-Match when another process's writes keep winning."""


class OpenAccount(BaseModel):
    owner: str = Field(min_length=1, max_length=200)
    currency: str = Field(default="EUR", min_length=3, max_length=3)


class Amount(BaseModel):
    amount: Decimal = Field(gt=0, max_digits=18, decimal_places=2)


class AccountView(BaseModel):
    id: str
    owner: str | None = None
    balance: Decimal
    version: int
    closed: bool = False


class Bank:
    """The app's resources: the store, the repository and the read model's engine."""

    def __init__(self, settings: KafkaSettings, database_url: str, topic_prefix: str) -> None:
        self.store = KafkaEventStore(settings, [Account], topic_prefix=topic_prefix)
        self.accounts = AsyncRepository(self.store, Account)
        self.engine: Engine = create_read_model_engine(database_url)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def serialized(self, account_id: str) -> AsyncIterator[None]:
        """One command per account at a time in this process.

        Commands on one account would otherwise race each other at one expected version
        and all but one fail; queued here, each runs against the version the previous one
        wrote. Only writes from other processes can still race (and are retried).
        """
        lock, users = self._locks.get(account_id, (asyncio.Lock(), 0))
        self._locks[account_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[account_id]
            if users == 1:
                del self._locks[account_id]
            else:
                self._locks[account_id] = (lock, users - 1)

    def close(self) -> None:
        self.store.close()
        self.engine.dispose()

    def read_balance(self, account_id: str) -> AccountView | None:
        query = text(
            "SELECT owner, balance_cents, version, closed FROM balances_accounts "
            "WHERE account_id = :id"
        )
        with self.engine.connect() as conn:
            row = conn.execute(query, {"id": account_id}).first()
        if row is None:
            return None
        owner, cents, version, closed = row
        return AccountView(
            id=account_id,
            owner=owner,
            balance=Decimal(cents).scaleb(-2),
            version=version,
            closed=bool(closed),
        )


def create_app(
    settings: KafkaSettings | None = None,
    database_url: str | None = None,
    topic_prefix: str | None = None,
) -> FastAPI:
    """The FastAPI app (``uvicorn --factory examples.bank.api:create_app``)."""
    settings = settings or KafkaSettings()
    database_url = database_url or os.environ.get("EVENTSOURCE_DATABASE_URL", DEFAULT_DATABASE_URL)
    prefix = os.environ.get("BANK_TOPIC_PREFIX", "") if topic_prefix is None else topic_prefix

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bank = Bank(settings, database_url, prefix)
        await asyncio.to_thread(bank.store.start)  # fences, catches up: seconds, off the loop
        app.state.bank = bank
        try:
            yield
        finally:
            await asyncio.to_thread(bank.close)

    app = FastAPI(title="eventsource bank", lifespan=lifespan)

    @app.post("/accounts", status_code=201)
    async def open_account(body: OpenAccount, request: Request, response: Response) -> AccountView:
        bank: Bank = request.app.state.bank
        account = bank.accounts.create(f"acc-{uuid.uuid4().hex[:12]}")
        account.open(owner=body.owner, currency=body.currency)
        result = await _save(bank, account)
        response.headers["Location"] = str(request.url_for("get_account", account_id=account.id))
        _written(response, result)
        return AccountView(id=account.id, owner=account.owner, balance=account.balance, version=1)

    @app.post("/accounts/{account_id}/deposits")
    async def deposit(
        account_id: str,
        body: Amount,
        request: Request,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> AccountView:
        return await _command(request, response, account_id, if_match, "deposit", body.amount)

    @app.post("/accounts/{account_id}/withdrawals")
    async def withdraw(
        account_id: str,
        body: Amount,
        request: Request,
        response: Response,
        if_match: Annotated[str | None, Header()] = None,
    ) -> AccountView:
        return await _command(request, response, account_id, if_match, "withdraw", body.amount)

    @app.get("/accounts/{account_id}")
    async def get_account(
        account_id: str,
        request: Request,
        response: Response,
        after: str | None = None,
        timeout: Annotated[float, Query(gt=0, le=30)] = 5.0,
    ) -> AccountView:
        bank: Bank = request.app.state.bank
        if after:
            try:
                await wait_for_positions(
                    AccountBalances.name, bank.engine, parse_positions(after), timeout
                )
            except WaitTimeoutError as error:
                raise problem(504, "read-model-behind", str(error)) from None
        try:
            view = await asyncio.to_thread(bank.read_balance, account_id)
        except exc.OperationalError as error:  # no tables yet: the projector never ran
            raise problem(503, "read-model-unavailable", str(error.orig)) from None
        if view is None:
            raise problem(404, "no-such-account", f"no account {account_id!r} in the read model")
        response.headers["ETag"] = etag(view.version)
        return view

    return app


async def _command(
    request: Request,
    response: Response,
    account_id: str,
    if_match: str | None,
    command: str,
    amount: Decimal,
) -> AccountView:
    """Run a deposit or withdrawal at the version If-Match names, or the current one."""
    bank: Bank = request.app.state.bank
    wanted = expected_version(if_match)
    async with bank.serialized(account_id):
        return await _attempts(bank, response, account_id, wanted, command, amount)


async def _attempts(
    bank: Bank,
    response: Response,
    account_id: str,
    wanted: int | None,
    command: str,
    amount: Decimal,
) -> AccountView:
    for attempt in range(1 if wanted is not None else RACE_RETRIES):
        try:
            account = await bank.accounts.get(account_id)
        except AggregateNotFoundError:
            raise problem(404, "no-such-account", f"no account {account_id!r}") from None
        if wanted is not None and account.version != wanted:
            raise _stale(account_id, wanted, account.version)
        try:
            getattr(account, command)(amount)
        except DomainError as error:
            raise problem(409, "rule-violated", str(error)) from None
        try:
            result = await _save(bank, account)
        except ConcurrencyError as error:
            if wanted is not None:
                raise _stale(account_id, wanted, error.actual) from None
            if attempt == RACE_RETRIES - 1:
                raise problem(409, "too-much-contention", str(error)) from None
            continue
        _written(response, result)
        return AccountView(
            id=account.id, owner=account.owner, balance=account.balance, version=result.version
        )
    raise AssertionError("unreachable")


def _stale(account_id: str, wanted: int, actual: int) -> Exception:
    return problem(
        412,
        "stale-version",
        f"account {account_id!r} is at version {actual}, not {wanted} (If-Match): "
        "GET it again and decide with its current state",
    )


async def _save(bank: Bank, account: Account) -> AppendResult:
    try:
        return await bank.accounts.save(account)
    except UncertainCommitError as error:
        raise problem(504, "uncertain-commit", str(error)) from None
    except StoreUnavailableError as error:
        raise problem(503, "store-unavailable", str(error)) from None


def _written(response: Response, result: AppendResult) -> None:
    response.headers["ETag"] = etag(result.version)
    response.headers[POSITIONS_HEADER] = format_positions(result.positions)
