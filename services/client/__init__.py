"""The Python client of the credit ledger's Kafka API (docs/CLIENT.md, docs/asyncapi.json)."""

from domain.replies import Balance, ErrorBody, Reply
from services.client.client import CreditsClient
from services.client.errors import (
    ClientClosed,
    CommandNotSent,
    CommandTimeout,
    InvalidCommand,
    InvalidReply,
)
from services.client.partitioning import partition_for

__all__ = [
    "Balance",
    "ClientClosed",
    "CommandNotSent",
    "CommandTimeout",
    "CreditsClient",
    "ErrorBody",
    "InvalidCommand",
    "InvalidReply",
    "Reply",
    "partition_for",
]
