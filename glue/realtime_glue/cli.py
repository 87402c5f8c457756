"""The `realtime-glue` command: run a pipeline, put jobs, look at feeds, check the config."""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import faulthandler  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from redis.exceptions import RedisError  # noqa: E402

from . import __version__  # noqa: E402
from .config import GlueConfig, config_path, load_config  # noqa: E402
from .errors import ConfigError, PutNotReplicated  # noqa: E402
from .firehose.commands import add_commands as add_firehose_commands  # noqa: E402
from .jobqueue import JobFeed, JobState  # noqa: E402
from .logs import setup_logging  # noqa: E402
from .partitions import PartitionedFeed  # noqa: E402
from .pipeline import build_pipeline  # noqa: E402
from .primary_watch import describe_primary, redis_status  # noqa: E402
from .sign_command import add_command as add_sign_command  # noqa: E402
from .sign_command import subscribe_keys  # noqa: E402
from .stage import StageContext  # noqa: E402
from .webpush.commands import add_commands as add_webpush_commands  # noqa: E402

# sysexits.h: systemd shows these by name (status=78/CONFIG), and glue@.service
# does not restart on EX_CONFIG: a bad config stays bad until someone edits it.
EX_CONFIG = 78
# A durable put not confirmed by enough replicas: queued, try again later.
EX_TEMPFAIL = 75
# check-config: the sentinels know the service but name no working primary now.
EX_UNAVAILABLE = 69


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="realtime-glue", description=__doc__)
    parser.add_argument("--version", action="version", version=f"realtime-glue {__version__}")
    parser.add_argument(
        "-c", "--config", help=f"config file (default: $REALTIME_GLUE_CONFIG or {config_path()})"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run one pipeline in the foreground (what glue@PIPELINE.service runs)")
    p.add_argument("pipeline")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("enqueue", help="put jobs on a pipeline's feed: PAYLOAD, or one per line on stdin")
    p.add_argument("pipeline", help="a pipeline name (its feed is used) or feed:NAME")
    p.add_argument("payload", nargs="?", help="the job payload (JSON); omit to read lines from stdin")
    p.add_argument("--priority", action="store_true", help="consume before the jobs already queued")
    p.add_argument(
        "--durable",
        action="store_true",
        help="return only once a replica has the jobs ([redis] durable_replicas); else exit 75",
    )
    p.set_defaults(func=cmd_enqueue)

    p = sub.add_parser("status", help="depth, claimed, stalled, backlog per node and rates of each pipeline")
    p.add_argument("pipelines", nargs="*")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--sample", type=float, default=1.0, help="seconds over which to measure rates (0: none)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "stalled",
        help="list a pipeline's stalled jobs and each push node's dead-letter, with the reason of each",
    )
    p.add_argument("pipeline")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stalled)

    p = sub.add_parser("retry", help="put stalled jobs (or a node's dead letters) back on the queue")
    p.add_argument("pipeline")
    p.add_argument("ids", nargs="*")
    p.add_argument("--all", action="store_true", help="retry every stalled job")
    p.add_argument("--node", help="retry this push node's dead letters (host:port) into its backlog")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser("check-config", help="validate the config file and build every pipeline")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser(
        "readers",
        help="count readers per channel across the push nodes and publish them"
        " (what glue-readers.service runs)",
    )
    p.add_argument("--once", action="store_true", help="print one round's counts as JSON; publish nothing")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=cmd_readers)
    add_sign_command(sub)
    add_firehose_commands(sub)

    add_webpush_commands(sub)

    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        return args.func(args, config) or 0
    except ConfigError as exc:
        print(f"realtime-glue: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except PutNotReplicated as exc:
        # Queued all the same: their ids, then why they may not survive a failover.
        print("\n".join(exc.job_ids))
        print(f"realtime-glue: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except BrokenPipeError:
        return 0


def _redis(config: GlueConfig):
    from .redis_connection import connect_redis

    return connect_redis(config)


def _feed(config: GlueConfig, target: str) -> JobFeed | PartitionedFeed:
    if target.startswith("feed:"):
        return JobFeed(_redis(config), target[5:])
    pc = config.pipeline(target)
    if pc.partitions > 1:  # stalled jobs and retries over every partition
        return PartitionedFeed(_redis(config), pc.feed, pc.partitions)
    return JobFeed(_redis(config), pc.feed)


def cmd_run(args, config: GlueConfig) -> int:
    from .service import GlueService

    setup_logging(args.pipeline, verbose=args.verbose)
    # A glue killed by the watchdog (SIGABRT) leaves the stack it was stuck at in the journal.
    faulthandler.enable()
    return GlueService(config, args.pipeline).run()


def _producer(config: GlueConfig, target: str) -> PartitionedFeed:
    """Where `enqueue` puts jobs: the pipeline's feed, or its channel's partition of it."""
    durability = {"durable_replicas": config.durable_replicas, "durable_timeout": config.durable_timeout}
    if target.startswith("feed:"):
        return PartitionedFeed(_redis(config), target[5:], **durability)
    pc = config.pipeline(target)
    return PartitionedFeed(_redis(config), pc.feed, pc.partitions, **durability)


def cmd_enqueue(args, config: GlueConfig) -> int:
    try:
        return _enqueue(args, _producer(config, args.pipeline))
    except ValueError as exc:  # a partitioned feed needs the job's channel
        print(f"realtime-glue: enqueue: {exc}", file=sys.stderr)
        return 1


def _enqueue(args, feed: PartitionedFeed) -> int:
    if args.payload is not None:
        print(feed.put(args.payload, priority=args.priority, durable=args.durable))
        return 0
    batch = []
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line:
            batch.append(line)
        if len(batch) >= 500:
            print("\n".join(feed.put_many(batch, priority=args.priority, durable=args.durable)))
            batch = []
    if batch:
        print("\n".join(feed.put_many(batch, priority=args.priority, durable=args.durable)))
    return 0


def _built(config: GlueConfig, name: str, redis):
    """The pipeline's stages, built as `run` builds them (nothing is started)."""
    pc = config.pipeline(name)
    try:
        return build_pipeline(name, pc.stages, pc.stage_options, StageContext(name, redis=redis), pc.preset)
    except ConfigError as exc:
        raise exc.under(f"pipelines.{name}") from None


def _dead_letter_feeds(config: GlueConfig, name: str, redis) -> dict[str, JobFeed]:
    pipeline = _built(config, name, redis)
    try:
        return {
            where: feed
            for stage in pipeline.stages
            for where, feed in getattr(stage, "dead_letter_feeds", dict)().items()
        }
    finally:
        pipeline.close()


# Share of maxmemory from which `status` warns: with noeviction, Redis refuses
# writes when full, and queues and backlogs stop.
MEMORY_WARNING = 0.8


def redis_memory(redis) -> dict:
    """Redis's memory against its maxmemory, and a warning when it nears it (or has none)."""
    info = redis.info("memory")
    used, limit = int(info["used_memory"]), int(info.get("maxmemory", 0))
    policy = info.get("maxmemory_policy", "")
    warning = None
    if limit == 0:
        warning = "Redis has no maxmemory: a long push node outage can fill this host's memory"
    elif used >= MEMORY_WARNING * limit:
        warning = (
            f"Redis uses {100 * used / limit:.0f}% of its maxmemory ({used} of {limit} bytes, {policy}):"
            " when full, writes fail and queues and backlogs stop"
        )
    return {"used": used, "max": limit, "policy": policy, "warning": warning}


def pipeline_status(config: GlueConfig, name: str, redis) -> dict:
    pc = config.pipeline(name)
    feed = PartitionedFeed(redis, pc.feed, pc.partitions)
    status = {"pipeline": name, "feed": pc.feed, **feed.counts()}
    status["oldest_unfinished_seconds"] = feed.oldest_unfinished_age()
    if pc.partitions > 1:
        status["partitions"] = feed.partition_status()
    status["backlog"] = {}
    pipeline = _built(config, name, redis)
    try:
        for stage in pipeline.stages:
            status.update(stage.status())
    finally:
        pipeline.close()
    return status


def cmd_status(args, config: GlueConfig) -> int:
    redis = _redis(config)
    names = args.pipelines or sorted(config.pipelines)
    first = {n: pipeline_status(config, n, redis) for n in names}
    if args.sample > 0:
        time.sleep(args.sample)
        for name in names:
            again = pipeline_status(config, name, redis)
            for counter in ("publishes", "finishes"):
                again[f"{counter}_per_second"] = round(
                    (again[counter] - first[name][counter]) / args.sample, 1
                )
            first[name] = again
    rows = [first[n] for n in names]
    memory = redis_memory(redis)
    primary = redis_status(redis)
    for row in rows:
        row["redis_memory"] = memory
        row["redis"] = primary
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if memory["warning"]:
        print(f"WARNING: {memory['warning']}")
    if primary["sentinel"]:
        print(describe_primary(primary))
    for row in rows:
        age = row["oldest_unfinished_seconds"]
        print(f"{row['pipeline']} (feed {row['feed']}):")
        states = "  ".join(f"{state.value} {row[state.value]}" for state in JobState)
        print(
            f"  {states}  workers {row['workers']}  oldest unfinished {'-' if age is None else f'{age:.1f}s'}"
        )
        if "publishes_per_second" in row:
            print(f"  rates: put {row['publishes_per_second']}/s  finished {row['finishes_per_second']}/s")
        for part in row.get("partitions", []):
            states = "  ".join(f"{state.value} {part[state.value]}" for state in JobState)
            print(f"  partition {part['feed']}: {states}  held by {part['holder'] or 'nobody'}")
        limit = row.get("backlog_limit")
        for node, depth in row["backlog"].items():
            dropped = row.get("backlog_dropped", {}).get(node, {})
            full = "  FULL: dropping the oldest" if limit and depth >= limit else ""
            print(
                f"  backlog {node}: {depth}{full}  dead letters {row.get('dead_letters', {}).get(node, 0)}"
                f"  dropped: {dropped.get('expired', 0)} past the node's message TTL,"
                f" {dropped.get('full', 0)} over the limit of {limit}"
            )
    return 0


def cmd_stalled(args, config: GlueConfig) -> int:
    feed = _feed(config, args.pipeline)
    rows = [{"id": i, "reason": r, "node": None} for i, r in feed.stalled_jobs().items()]
    if not args.pipeline.startswith("feed:"):
        for node, dead_letters in _dead_letter_feeds(config, args.pipeline, feed.redis).items():
            rows += [{"id": i, "reason": r, "node": node} for i, r in dead_letters.stalled_jobs().items()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    node = None
    for row in rows:
        if row["node"] != node:
            node = row["node"]
            print(f"node {node}: messages it refused for good (its dead-letter)")
        print(f"{'  ' if node else ''}{row['id']}  {row['reason']}")
    own = sum(1 for row in rows if row["node"] is None)
    print(f"{own} stalled, {len(rows) - own} in push nodes' dead-letters", file=sys.stderr)
    return 0


def cmd_retry(args, config: GlueConfig) -> int:
    feed = _feed(config, args.pipeline)
    if args.node:
        dead_letters = _dead_letter_feeds(config, args.pipeline, feed.redis)
        if args.node not in dead_letters:
            known = ", ".join(dead_letters) or "none"
            print(f"no push node {args.node} in pipeline {args.pipeline} (nodes: {known})", file=sys.stderr)
            return 1
        feed = dead_letters[args.node]
    ids = list(feed.stalled_jobs()) if args.all else args.ids
    if not ids:
        print("nothing to retry: give job ids or --all", file=sys.stderr)
        return 1
    missing = [i for i in ids if not feed.retry(i)]
    print(f"{len(ids) - len(missing)} job(s) back on the queue")
    for job_id in missing:
        print(f"not stalled: {job_id}", file=sys.stderr)
    return 1 if missing else 0


def cmd_readers(args, config: GlueConfig) -> int:
    from .readers.service import ReadersService

    if args.once:
        print(json.dumps(ReadersService(config).count_once(), indent=2))
        return 0
    setup_logging("", verbose=args.verbose, identifier="glue-readers")
    faulthandler.enable()
    return ReadersService(config).run()


def cmd_check_config(args, config: GlueConfig) -> int:
    if config.redis_sentinel is not None:
        from .redis_connection import check_sentinels

        try:
            found = check_sentinels(config)
        except RedisError as exc:  # they know the service, but no primary works now
            print(f"realtime-glue: redis: {exc}", file=sys.stderr)
            return EX_UNAVAILABLE
        print(
            f"redis: service {config.redis_sentinel.service}: primary {found.primary[0]}:{found.primary[1]}"
            f" (sentinel {found.sentinel}, epoch {found.epoch})"
        )
    for name, pc in sorted(config.pipelines.items()):
        try:
            pipeline = build_pipeline(
                name, pc.stages, pc.stage_options, StageContext(pipeline=name), pc.preset
            )
        except ConfigError as exc:
            raise exc.under(f"pipelines.{name}") from None
        pipeline.close()
        feed = pc.feed if pc.partitions == 1 else f"{pc.feed} in {pc.partitions} partitions"
        print(f"pipeline {name}: feed {feed}: {' -> '.join(pc.stages)}")
    if config.subscribe.keys_file:
        keys = subscribe_keys(config)
        print(f"subscribe keys {config.subscribe.keys_file}: {', '.join(keys.keys) or 'none'}")
    print(f"{config.path}: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
