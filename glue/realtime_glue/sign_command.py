"""`realtime-glue sign CHANNEL`: a signed subscribe URL, from the [subscribe] key set."""

from __future__ import annotations

import json
import sys

from .errors import ConfigError, SigningError
from .signing import TRANSPORTS, KeySet, SignedSubscription, is_private, load_key_set, sign


def add_command(subcommands) -> None:
    p = subcommands.add_parser(
        "sign", help="a signed subscribe URL for a private channel (checked by the push nodes)"
    )
    p.add_argument("channel")
    p.add_argument("--ttl", type=int, default=3600, help="seconds the URL is valid (default an hour)")
    p.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="",
        help="bind the URL to one transport (default: the URL works on every transport)",
    )
    p.add_argument("--key-id", default="", help="the key that signs (default: subscribe.key_id)")
    p.add_argument("--url", default="", help="the nodes' public address (default: subscribe.url)")
    p.add_argument("--json", action="store_true", help="print every transport's URL and the parts")
    p.set_defaults(func=cmd_sign)


def subscribe_keys(config) -> KeySet:
    """The key set [subscribe] keys_file names; ConfigError when there is none or it is unsafe."""
    if not config.subscribe.keys_file:
        raise ConfigError("subscribe.keys_file", "not set: no key to sign subscribe URLs with")
    return load_key_set(config.subscribe.keys_file)


def print_signed(signed: SignedSubscription, base_url: str, as_json: bool) -> None:
    """The URL (for the bound transport, else EventSource's), or with --json every part."""
    if as_json:
        parts = {k: getattr(signed, k) for k in ("channel", "expires", "key_id", "transport", "query")}
        print(json.dumps({**parts, "urls": signed.urls(base_url)}, indent=2))
    else:
        print(signed.url(base_url))


def cmd_sign(args, config) -> int:
    keys = subscribe_keys(config)
    try:
        signed = sign(keys, args.channel, args.ttl, args.transport, args.key_id or config.subscribe.key_id)
    except SigningError as exc:
        print(f"realtime-glue: cannot sign: {exc}", file=sys.stderr)
        return 1
    if not is_private(args.channel, config.subscribe.private_prefixes):
        prefixes = ", ".join(config.subscribe.private_prefixes) or "none"
        print(
            f"note: {args.channel} is a public channel (private prefixes: {prefixes}):"
            " the nodes let anyone read it, signed or not",
            file=sys.stderr,
        )
    print_signed(signed, args.url or config.subscribe.url, args.json)
    return 0
