"""The event store on PostgreSQL: eventsourcing's recorder plus command receipts.

Receipts (`infra/receipts.py`) are inserted in the same transaction as the events and the
tracking position, so a command's effect, its receipt and (for Kafka) the offset it came from
commit together or not at all. eventsourcing's database-functions mode is never used: in 9.5 it
takes no table lock and drops tracking rows (DESIGN §8).

- `recorder.py`: the recorder: a save (events, receipts, positions, replies) in one transaction;
- `kafka_tables.py`: consumer positions per partition and the replies saved with a batch;
- `follower_tables.py`: positions of the notification-log followers and the scheduler's due index;
- `factory.py`: the factory eventsourcing builds the recorder with (pool, table creation);
- `env.py`: the environment that selects the factory, from the settings.
"""
