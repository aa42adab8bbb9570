"""The balances this client last saw in a reply, per account: bounded, least recently used out.

There is no read command on Kafka (DESIGN §2.2): a reply's balances are the only balances that
travel on it. They are as of that command, so they are a hint, not a read: the HTTP API
(`GET /v1/accounts/{id}`) is the read.
"""

from __future__ import annotations

from collections import OrderedDict

from domain.replies import Balance, Reply


class LastKnownBalances:
    def __init__(self, max_accounts: int) -> None:
        assert max_accounts >= 1
        self.max_accounts = max_accounts
        self._by_account: OrderedDict[str, dict[str, Balance]] = OrderedDict()

    def remember(self, reply: Reply) -> None:
        # A duplicate carries the balances of the ORIGINAL command, older than what may have
        # been seen since; an empty map (unknown account, invalid command) says nothing.
        if reply.status == "duplicate" or not reply.balances:
            return
        self._by_account[reply.account_id] = dict(reply.balances)
        self._by_account.move_to_end(reply.account_id)
        while len(self._by_account) > self.max_accounts:
            self._by_account.popitem(last=False)

    def get(self, account_id: str) -> dict[str, Balance] | None:
        balances = self._by_account.get(account_id)
        return None if balances is None else dict(balances)

    def __len__(self) -> int:
        return len(self._by_account)
