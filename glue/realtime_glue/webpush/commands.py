"""`realtime-glue webpush ...`: keys, tokens, subscriptions, a test notification, status.

keygen --vapid PATH [--token-key PATH] [--owner USER]   new key files, mode 0600
token PIPELINE USER [--ttl SECONDS]                      a subscription token (what the app makes)
subscriptions [USER...] [--json]                         who has subscribed, with what, to which threads
send-test PIPELINE USER [--title T] [--text T]           a notification to USER now, each answer shown
status PIPELINE [--json]                                 public key, backlog per origin, dead letters
"""

from __future__ import annotations

import json
import os
import pwd
import sys
import time
import uuid
from datetime import UTC, datetime

from ..errors import ConfigError
from ..jobqueue import JobFeed
from ..keyfile import read_private_key
from ..stage import StageContext
from .backlog import backlog_feed_name, backlog_index_key
from .deadletter import DeadLetters
from .delivery import now_ms
from .request import build_request
from .sender import RETRY
from .subscriptions import SubscriptionStore
from .token import KEY_BYTES, make_token, user_problem
from .vapid import VapidKey


def add_commands(subcommands) -> None:
    """Adds `webpush` and its subcommands to the realtime-glue command line."""
    parser = subcommands.add_parser(
        "webpush", help="Web Push: keys, tokens, subscriptions, test notifications"
    )
    sub = parser.add_subparsers(dest="webpush_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("keygen", help="create the VAPID key and/or the token key (files of mode 0600)")
    p.add_argument("--vapid", metavar="PATH", help="the VAPID private key to create (PEM)")
    p.add_argument("--token-key", metavar="PATH", help="the key that signs subscription tokens (32 bytes)")
    p.add_argument("--owner", metavar="USER", help="give the files to USER (e.g. realtime-glue)")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("token", help="a token that lets USER register subscriptions (what the app makes)")
    p.add_argument("pipeline")
    p.add_argument("user")
    p.add_argument("--ttl", type=int, default=86400, help="seconds the token is valid (default a day)")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("subscriptions", help="users' subscriptions and followed threads")
    p.add_argument("users", nargs="*", metavar="USER", help="these users (default: every user, counted)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_subscriptions)

    p = sub.add_parser("send-test", help="send a notification to USER's browsers now and show each answer")
    p.add_argument("pipeline")
    p.add_argument("user")
    p.add_argument("--title", default="realtime-glue")
    p.add_argument("--text", default="A test notification from realtime-glue")
    p.set_defaults(func=cmd_send_test)

    p = sub.add_parser("status", help="VAPID public key, backlog per push service, dead letters")
    p.add_argument("pipeline")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)


# --- keys and tokens ---------------------------------------------------------------


def write_secret(path: str, data: bytes, force: bool, owner: str | None) -> None:
    """Writes a file only its owner can read; refuses to replace one unless forced."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError("", f"{path} exists; keep it, or replace it with --force") from None
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        if owner:
            entry = pwd.getpwnam(owner)
            os.fchown(handle.fileno(), entry.pw_uid, entry.pw_gid)
        handle.write(data)


def cmd_keygen(args, config) -> int:
    if not args.vapid and not args.token_key:
        print("nothing to create: give --vapid PATH and/or --token-key PATH", file=sys.stderr)
        return 1
    if args.owner:
        try:
            pwd.getpwnam(args.owner)
        except KeyError:
            print(f"no such user: {args.owner}", file=sys.stderr)
            return 1
    if args.vapid:
        key = VapidKey.generate()
        write_secret(args.vapid, key.pem(), args.force, args.owner)
        print(f"wrote {args.vapid}")
        print(f"VAPID public key (the page's applicationServerKey): {key.public_key_b64}")
    if args.token_key:
        write_secret(args.token_key, os.urandom(KEY_BYTES), args.force, args.owner)
        print(f"wrote {args.token_key} (give the application a copy: it signs the tokens)")
    return 0


def _options(config, pipeline: str) -> dict:
    pc = config.pipeline(pipeline)
    if "webpush" not in pc.stages:
        raise ConfigError(f"pipelines.{pipeline}.stages", "has no webpush stage")
    return pc.stage_options.get("webpush", {})


def cmd_token(args, config) -> int:
    key_file = _options(config, args.pipeline).get("token_key_file")
    if not key_file:
        raise ConfigError(f"pipelines.{args.pipeline}.webpush.token_key_file", "not set")
    key = read_private_key(key_file, f"pipelines.{args.pipeline}.webpush.token_key_file", size=KEY_BYTES)
    problem = user_problem(args.user)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    print(make_token(key, args.user, int(time.time()) + args.ttl))
    return 0


# --- looking --------------------------------------------------------------------


def _redis(config):
    from ..redis_connection import connect_redis

    return connect_redis(config)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if ms else "-"


def cmd_subscriptions(args, config) -> int:
    store = SubscriptionStore(_redis(config))
    users = args.users or store.users()
    found = store.for_users(users)
    rows = [
        {
            "user": user,
            "subscriptions": [
                {"id": s.id, "origin": s.origin, "endpoint": s.endpoint, "created": _when(s.created_ms)}
                for s in found[user]
            ],
            "threads": store.threads(user),
        }
        for user in users
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        if not args.users:
            print(
                f"{row['user']}: {len(row['subscriptions'])} subscription(s), {len(row['threads'])} thread(s)"
            )
            continue
        print(f"{row['user']}:")
        for s in row["subscriptions"]:
            print(f"  {s['id']}  {s['origin']}  since {s['created']}")
        print(f"  threads: {', '.join(row['threads']) or '-'}")
    if not args.users:
        print(f"{len(rows)} user(s) with subscriptions", file=sys.stderr)
    return 0


def _stage(config, pipeline: str, redis):
    from ..registry import stage_class

    try:
        return stage_class("webpush")(
            _options(config, pipeline), StageContext(pipeline=pipeline, redis=redis)
        )
    except ConfigError as exc:
        raise exc.under(f"pipelines.{pipeline}.webpush") from None


def cmd_send_test(args, config) -> int:
    stage = _stage(config, args.pipeline, _redis(config))
    try:
        subscriptions = stage.store.for_user(args.user)
        if not subscriptions:
            print(f"user {args.user} has no subscriptions", file=sys.stderr)
            return 1
        body = json.dumps(
            {
                "id": f"test-{uuid.uuid4().hex[:12]}",
                "channel": "webpush-test",
                "event": "test",
                "data": {"title": args.title, "text": args.text},
            },
            separators=(",", ":"),
        ).encode()
        stamp = now_ms()
        requests = [
            build_request(args.user, s, body, stage.ttl, stage.urgency, None, "send-test", stamp)
            for s in subscriptions
        ]
        answers = stage.deliverer.send(requests)
        stage.deliverer.settle([(r, a) for r, a in zip(requests, answers, strict=True) if a.outcome != RETRY])
        for request, answer in zip(requests, answers, strict=True):
            print(f"{request.subscription_id}  {request.origin}  {answer.outcome}  {answer.reason}")
        return 0 if all(a.outcome == "sent" for a in answers) else 1
    finally:
        stage.close()


def cmd_status(args, config) -> int:
    stage = _stage(config, args.pipeline, None)
    stage.close()
    redis = _redis(config)
    backlogs = {}
    for origin in sorted(o.decode() for o in redis.smembers(backlog_index_key(args.pipeline))):
        counts = JobFeed(redis, backlog_feed_name(args.pipeline, origin)).counts()
        backlogs[origin] = {"waiting": counts["ready"] + counts["claimed"], "stalled": counts["stalled"]}
    dead = DeadLetters(redis, args.pipeline)
    status = {
        "pipeline": args.pipeline,
        "public_key": stage.vapid_key.public_key_b64,
        "backlog": backlogs,
        "dead_letters": dead.count(),
        "newest_dead_letters": dead.newest(10),
    }
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"{args.pipeline}: VAPID public key {status['public_key']}")
    for origin, depth in backlogs.items():
        print(f"  backlog {origin}: {depth['waiting']} waiting, {depth['stalled']} unreadable")
    print(f"  dead letters: {status['dead_letters']}")
    for record in status["newest_dead_letters"]:
        when, origin = _when(record["time_ms"]), record["origin"]
        print(f"    {when}  job {record['job']}  user {record['user']}  {origin}: {record['reason']}")
    return 0
