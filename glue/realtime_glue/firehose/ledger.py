"""What Redis records of a firehose pipeline's customers: who it serves, and how many
messages each customer's channel was given (the delivery count, for billing).

    glue.firehose.customers:<pipeline>   hash customer -> channel: the customers it
                                         published for (a customer removed from the
                                         config is still here until its channel is
                                         closed on every node)
    glue.firehose.delivered:<pipeline>   hash customer -> messages its channel got
"""

from __future__ import annotations


def customers_key(pipeline: str) -> str:
    return f"glue.firehose.customers:{pipeline}"


def delivered_key(pipeline: str) -> str:
    return f"glue.firehose.delivered:{pipeline}"


class FirehoseLedger:
    def __init__(self, redis, pipeline: str):
        self.redis = redis
        self.pipeline = pipeline

    def count(self, delivered: dict[str, int]) -> None:
        """Add a batch's deliveries per customer (one round trip)."""
        if not delivered:
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for customer, count in delivered.items():
                pipe.hincrby(delivered_key(self.pipeline), customer, count)
            pipe.execute()

    def delivered(self) -> dict[str, int]:
        raw = self.redis.hgetall(delivered_key(self.pipeline))
        return {_text(customer): int(count) for customer, count in raw.items()}

    def customers(self) -> dict[str, str]:
        """Customer -> channel, for every customer published for and not yet closed."""
        raw = self.redis.hgetall(customers_key(self.pipeline))
        return {_text(customer): _text(channel) for customer, channel in raw.items()}

    def serve(self, channels: dict[str, str]) -> None:
        if channels:
            self.redis.hset(customers_key(self.pipeline), mapping=channels)

    def closed(self, customer: str) -> None:
        """The customer's channel is closed on every node: nothing left to do for it."""
        self.redis.hdel(customers_key(self.pipeline), customer)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
