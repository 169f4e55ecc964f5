"""The HTTP example end to end: uvicorn and ``eventsource run`` in subprocesses, httpx.

The app (``examples/bank/api.py``) writes to the real broker; the projector keeps the
read model in SQLite; the test talks HTTP only, as a web client would.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from eventsource.kafka.broker_process import free_port
from tests.e2e.conftest import BALANCES, cli_env, services, wait_for

pytestmark = pytest.mark.integration

WAIT = "30"
"""Seconds a read may wait for the projector (the API's maximum; a loaded machine is slow)."""


class Api:
    """``uvicorn --factory examples.bank.api:create_app`` on a free port."""

    def __init__(self, env: dict[str, str], cwd: Path, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "--factory", "examples.bank.api:create_app"),
                *("--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"),
            ],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)
        wait_for(self._up, 120, self.describe)

    def _up(self) -> bool:
        assert self.proc.poll() is None, f"the app exited\n{self.describe()}"
        try:
            return self.client.get("/openapi.json").status_code == 200
        except httpx.TransportError:
            return False

    def describe(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log.close()


@pytest.fixture(scope="module")
def bank(
    bootstrap_servers: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """One app and one projector for the module: each test opens accounts of its own."""
    tmp_path = tmp_path_factory.mktemp("bank")
    name = f"api{uuid.uuid4().hex[:10]}"
    db = f"sqlite:///{tmp_path / 'rm.db'}"
    env = {"EVENTSOURCE_APPLICATION_ID": name, "EVENTSOURCE_DATABASE_URL": db}
    with services(bootstrap_servers, tmp_path) as service:
        api = Api(
            cli_env(bootstrap_servers, BANK_TOPIC_PREFIX=f"{name}.", **env),
            tmp_path,
            tmp_path / "api.log",
        )
        try:
            # The app created the topic on start; the projector reads it into the read model.
            projector = service(BALANCES, "-t", f"{name}.bank.account.events", "-d", db, **env)
            wait_for(lambda: projector.caught_up("balances"), 120, projector.describe)
            yield api.client
        finally:
            api.close()


def open_account(client: httpx.Client, owner: str = "Ada") -> httpx.Response:
    response = client.post("/accounts", json={"owner": owner})
    assert response.status_code == 201, response.text
    return response


def test_opening_an_account_answers_201_with_location_etag_and_positions(
    bank: httpx.Client,
) -> None:
    response = open_account(bank)
    assert response.headers["ETag"] == '"1"'
    location = response.headers["Location"]
    assert location.endswith(f"/accounts/{response.json()['id']}")
    read = bank.get(
        location, params={"timeout": WAIT, "after": response.headers["Event-Positions"]}
    )
    assert read.status_code == 200, read.text
    assert read.json()["owner"] == "Ada" and read.headers["ETag"] == '"1"'


def test_a_read_after_a_write_sees_it(bank: httpx.Client) -> None:
    location = open_account(bank).headers["Location"]
    for n in range(1, 6):
        written = bank.post(f"{location}/deposits", json={"amount": "10.00"})
        assert written.status_code == 200, written.text
        read = bank.get(
            location, params={"timeout": WAIT, "after": written.headers["Event-Positions"]}
        )
        assert read.status_code == 200, read.text
        assert (read.json()["balance"], read.json()["version"]) == (f"{10 * n}.00", 1 + n)
        assert read.headers["ETag"] == written.headers["ETag"] == f'"{1 + n}"'


def test_a_stale_if_match_answers_412_and_writes_nothing(bank: httpx.Client) -> None:
    opened = open_account(bank)
    location, first_etag = opened.headers["Location"], opened.headers["ETag"]
    ok = bank.post(
        f"{location}/deposits", json={"amount": "5.00"}, headers={"If-Match": first_etag}
    )
    assert (ok.status_code, ok.headers["ETag"]) == (200, '"2"'), ok.text
    stale = bank.post(
        f"{location}/deposits", json={"amount": "7.00"}, headers={"If-Match": first_etag}
    )
    assert stale.status_code == 412, stale.text
    assert stale.json()["detail"]["type"] == "stale-version"
    read = bank.get(location, params={"timeout": WAIT, "after": ok.headers["Event-Positions"]})
    assert (read.json()["balance"], read.json()["version"]) == ("5.00", 2)


def test_overdrawing_answers_409_and_writes_nothing(bank: httpx.Client) -> None:
    location = open_account(bank).headers["Location"]
    deposit = bank.post(f"{location}/deposits", json={"amount": "3.00"})
    refused = bank.post(f"{location}/withdrawals", json={"amount": "3.01"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"]["type"] == "rule-violated"
    taken = bank.post(
        f"{location}/withdrawals", json={"amount": "3.00"}, headers={"If-Match": '"2"'}
    )
    assert taken.status_code == 200, taken.text
    read = bank.get(location, params={"timeout": WAIT, "after": taken.headers["Event-Positions"]})
    assert (read.json()["balance"], read.json()["version"]) == ("0.00", 3)
    assert deposit.status_code == 200


def test_unknown_accounts_and_bad_headers_get_clear_errors(bank: httpx.Client) -> None:
    missing = bank.post("/accounts/acc-nobody/deposits", json={"amount": "1.00"})
    assert missing.status_code == 404, missing.text
    location = open_account(bank).headers["Location"]
    bad = bank.post(f"{location}/deposits", json={"amount": "1.00"}, headers={"If-Match": "x"})
    assert (bad.status_code, bad.json()["detail"]["type"]) == (400, "bad-if-match")
    bad_after = bank.get(location, params={"timeout": WAIT, "after": "nonsense"})
    assert (bad_after.status_code, bad_after.json()["detail"]["type"]) == (400, "bad-after")
    negative = bank.post(f"{location}/deposits", json={"amount": "-1"})
    assert negative.status_code == 422


def test_a_read_waiting_for_positions_the_projector_never_reaches_answers_504(
    bank: httpx.Client,
) -> None:
    opened = open_account(bank)
    topic, partition, offset = opened.headers["Event-Positions"].split(":")
    beyond = f"{topic}:{partition}:{int(offset) + 1000}"
    late = bank.get(opened.headers["Location"], params={"after": beyond, "timeout": "0.5"})
    assert (late.status_code, late.json()["detail"]["type"]) == (504, "read-model-behind")


def test_concurrent_deposits_without_if_match_all_land(bank: httpx.Client) -> None:
    location = open_account(bank).headers["Location"]

    async def deposits() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(bank.base_url), timeout=60) as client:
            return list(
                await asyncio.gather(
                    *(
                        client.post(f"{location}/deposits", json={"amount": "1.00"})
                        for _ in range(8)
                    )
                )
            )

    responses = asyncio.run(deposits())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    last = max(responses, key=lambda r: int(r.headers["ETag"].strip('"')))
    read = bank.get(location, params={"timeout": WAIT, "after": last.headers["Event-Positions"]})
    assert (read.json()["balance"], read.json()["version"]) == ("8.00", 9)


def test_concurrent_deposits_with_one_if_match_have_one_winner(bank: httpx.Client) -> None:
    opened = open_account(bank)
    location, version = opened.headers["Location"], opened.headers["ETag"]

    async def deposits() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(bank.base_url), timeout=60) as client:
            calls = (
                client.post(
                    f"{location}/deposits", json={"amount": "1.00"}, headers={"If-Match": version}
                )
                for _ in range(8)
            )
            return list(await asyncio.gather(*calls))

    codes = sorted(r.status_code for r in asyncio.run(deposits()))
    assert codes == [200] + [412] * 7, codes
