"""The Python client of the credit ledger's Kafka API (docs/CLIENT.md, docs/asyncapi.json)."""

from credits_client.client import CreditsClient
from credits_client.connection import KafkaSettings, Topic
from credits_client.errors import (
    ClientClosed,
    CommandNotSent,
    CommandTimeout,
    InvalidCommand,
    InvalidReply,
)
from credits_client.partitioning import partition_for
from domain.replies import Balance, ErrorBody, Reply

__all__ = [
    "Balance",
    "ClientClosed",
    "CommandNotSent",
    "CommandTimeout",
    "CreditsClient",
    "ErrorBody",
    "InvalidCommand",
    "InvalidReply",
    "KafkaSettings",
    "Reply",
    "Topic",
    "partition_for",
]
