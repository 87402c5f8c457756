"""Puts comment jobs on a pipeline's feed at a steady rate; runs ON a glue node.

Uses the glue's own config (/etc/realtime-glue/glue.toml: Redis address and
password) and the installed package, so it needs nothing else on the node.
Prints each job id on its own line as soon as the job is queued.

    python3 producer.py --channel news --rate 100 --count 500   # the cluster tests
    python3 producer.py --channel news --rate 200 --count 6000 --durable
    python3 producer.py --demo                                  # `make up`: forever

--demo puts one job a second on the channel `demo` and a varying number on
news, sports and weather, so the live page's heatmap has something to show.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

import redis

from realtime_glue.config import load_config
from realtime_glue.errors import PutNotReplicated
from realtime_glue.jobqueue import JobFeed
from realtime_glue.redis_connection import connect_redis

DEMO_TEXTS = ["first!", "nice one", "agreed", "source?", "great news", "what a game", "rain again"]
DEMO_CHANNELS = {"news": 3, "sports": 5, "weather": 1}  # at most this many jobs a second


def comment(channel: str, number: int, text: str) -> str:
    data = {"n": number, "text": text, "sent": round(time.time(), 3), "email": "removed@by.anonymize"}
    return json.dumps({"channel": channel, "event": "comment", "data": data})


def produce(feed: JobFeed, channel: str, rate: float, count: int, durable: bool = False) -> None:
    """`count` jobs (0: forever) at `rate` a second, on an absolute schedule so
    that a slow round trip does not lower the rate.

    `durable`: each job is a durable put (acknowledged once a replica has it),
    put again with the same job id until one is acknowledged, as a producer that
    must not lose a job does through a failover; its id is printed then."""
    start = time.monotonic()
    number = 0
    while count == 0 or number < count:
        delay = start + number / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        item = comment(channel, number, f"message {number}")
        if not durable:
            print(feed.put(item), flush=True)
        else:
            job_id = f"{channel}-{number:07d}"
            while True:
                try:
                    feed.put(item, job_id=job_id, durable=True)
                    break
                except (redis.RedisError, PutNotReplicated):
                    time.sleep(0.05)
            print(job_id, flush=True)
        number += 1


def demo(feed: JobFeed) -> None:
    number = 0
    while True:
        jobs = [("demo", random.choice(DEMO_TEXTS))]
        for channel, most in DEMO_CHANNELS.items():
            jobs += [(channel, random.choice(DEMO_TEXTS))] * random.randint(0, most)
        for channel, text in jobs:
            feed.put(comment(channel, number, text))
            number += 1
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="glue config (default: the glue's own)")
    parser.add_argument("--pipeline", default="demo", help="pipeline whose feed gets the jobs")
    parser.add_argument("--channel", default="demo")
    parser.add_argument("--rate", type=float, default=1.0, help="jobs per second")
    parser.add_argument("--count", type=int, default=0, help="jobs to put (0: forever)")
    parser.add_argument("--demo", action="store_true", help="the demo mix, forever")
    parser.add_argument("--durable", action="store_true", help="durable puts, retried until acknowledged")
    args = parser.parse_args()

    config = load_config(args.config)
    feed = JobFeed(
        connect_redis(config),
        config.pipeline(args.pipeline).feed,
        durable_replicas=config.durable_replicas,
        durable_timeout=config.durable_timeout,
    )
    try:
        if args.demo:
            demo(feed)
        else:
            produce(feed, args.channel, args.rate, args.count, args.durable)
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
