"""Tutorial part 1: append and load in memory, then the repository.

Run from the repository root: .venv/bin/python -m examples.tutorial.in_memory
"""

# --8<-- [start:store]
from decimal import Decimal

from eventsource.errors import ConcurrencyError
from eventsource.store import InMemoryEventStore
from examples.bank.domain import Account, AccountOpened, MoneyDeposited

store = InMemoryEventStore()
result = store.append("bank.account", "acc-1", [AccountOpened(owner="ann")], expected_version=0)
assert result.version == 1
print(result.positions)  # where the event sits: topic, partition, offset

store.append("bank.account", "acc-1", [MoneyDeposited(amount=Decimal("30"))], expected_version=1)

try:  # a second writer that still believes the account is new
    store.append("bank.account", "acc-1", [AccountOpened(owner="bob")], expected_version=0)
except ConcurrencyError as error:
    print(error)  # aggregate 'acc-1' is at version 2, expected 0; nothing was written ...

account = store.load(Account, "acc-1")
assert (account.owner, account.balance, account.version) == ("ann", Decimal("30"), 2)
# --8<-- [end:store]

# --8<-- [start:repository]
from eventsource.store import Repository

accounts = Repository(store, Account)

account = accounts.get("acc-1")
account.withdraw(Decimal("12.50"))
accounts.save(account, correlation_id="atm-7")  # appends MoneyWithdrawn at version 2 -> 3

fresh = accounts.create("acc-2")
fresh.open(owner="bob")
fresh.deposit(Decimal("5"))
accounts.save(fresh)  # a new aggregate: expected version 0

stale = accounts.get("acc-1")
current = accounts.get("acc-1")
current.deposit(Decimal("1"))
accounts.save(current)
stale.deposit(Decimal("2"))
try:
    accounts.save(stale)  # loaded at version 3, the store is at 4 now
except ConcurrencyError:
    stale = accounts.get("acc-1")  # reload, then run the command again
    stale.deposit(Decimal("2"))
    accounts.save(stale)

assert accounts.get("acc-1").balance == Decimal("20.50")
assert accounts.get_or_none("acc-404") is None
print("acc-1:", accounts.get("acc-1").balance)  # acc-1: 20.50
# --8<-- [end:repository]
