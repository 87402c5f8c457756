"""`realtime-glue firehose ...`: a customer's signed URL, and what each customer was given.

url PIPELINE CUSTOMER [--ttl SECONDS] [--transport T] [--json]   the URL to hand the customer
status [PIPELINE...] [--json]                                    customers, channels, delivery counts
"""

from __future__ import annotations

import json
import sys

from ..errors import ConfigError, SigningError
from ..pipeline import build_pipeline
from ..redis_connection import connect_redis
from ..sign_command import print_signed, subscribe_keys
from ..signing import TRANSPORTS, sign
from ..stage import StageContext
from .ledger import FirehoseLedger

# A year: a customer's URL is revoked by removing its key, not by waiting for it to expire.
DEFAULT_TTL = 365 * 86400


def add_commands(subcommands) -> None:
    parser = subcommands.add_parser("firehose", help="the firehose: customers' URLs and delivery counts")
    sub = parser.add_subparsers(dest="firehose_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("url", help="a customer's signed URL to its firehose channel")
    p.add_argument("pipeline")
    p.add_argument("customer")
    p.add_argument("--ttl", type=int, default=DEFAULT_TTL, help="seconds the URL is valid (default a year)")
    p.add_argument("--transport", choices=TRANSPORTS, default="", help="bind the URL to one transport")
    p.add_argument("--url", default="", help="the nodes' public address (default: subscribe.url)")
    p.add_argument("--json", action="store_true", help="print every transport's URL and the parts")
    p.set_defaults(func=cmd_url)

    p = sub.add_parser("status", help="each customer's channel and the messages it was given")
    p.add_argument("pipelines", nargs="*", help="firehose pipelines (default: every one)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)


def firehose_customers(config, name: str) -> dict[str, str]:
    """Each customer of the pipeline and its channel, from the firehose stage built as `run`
    builds it (nothing started)."""
    pc = config.pipeline(name)
    if "firehose" not in pc.stages:
        raise ConfigError(f"pipelines.{name}", "has no firehose stage")
    try:
        pipeline = build_pipeline(name, pc.stages, pc.stage_options, StageContext(name), pc.preset)
    except ConfigError as exc:
        raise exc.under(f"pipelines.{name}") from None
    try:
        stage = pipeline.stage("firehose")
        return {customer: stage.channel(customer) for customer in stage.customers}
    finally:
        pipeline.close()


def cmd_url(args, config) -> int:
    customers = firehose_customers(config, args.pipeline)
    if args.customer not in customers:
        print(
            f"realtime-glue: {args.customer!r} is not a customer of pipelines.{args.pipeline}"
            f" (customers: {', '.join(customers)}): no URL for it",
            file=sys.stderr,
        )
        return 1
    keys = subscribe_keys(config)
    try:
        signed = sign(keys, customers[args.customer], args.ttl, args.transport)
    except SigningError as exc:
        print(f"realtime-glue: cannot sign: {exc}", file=sys.stderr)
        return 1
    print_signed(signed, args.url or config.subscribe.url, args.json)
    return 0


def cmd_status(args, config) -> int:
    names = args.pipelines or sorted(n for n, pc in config.pipelines.items() if "firehose" in pc.stages)
    redis = connect_redis(config)
    rows = []
    for name in names:
        customers = firehose_customers(config, name)
        ledger = FirehoseLedger(redis, name)
        delivered = ledger.delivered()
        closing = ledger.customers()
        for customer in sorted(set(customers) | set(delivered) | set(closing)):
            if customer in customers:
                state = "active"
            elif customer in closing:
                state = "removed, channel not yet closed on every node"
            else:
                state = "removed"
            rows.append(
                {
                    "pipeline": name,
                    "customer": customer,
                    "channel": customers.get(customer) or closing.get(customer),
                    "delivered": delivered.get(customer, 0),
                    "state": state,
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(
            f"{row['pipeline']}  {row['customer']}  {row['channel'] or '-'}  delivered {row['delivered']}"
            f"  {row['state']}"
        )
    return 0
