"""Which primary the glue takes from the sentinels' answers."""

from __future__ import annotations

from realtime_glue.redis_connection import SentinelAnswer, choose_primary, parse_master_state


def answer(sentinel: str, port: int, epoch: int, flags: str = "master") -> SentinelAnswer:
    return SentinelAnswer(sentinel, primary=("10.0.0.1", port), epoch=epoch, flags=flags)


def test_the_answer_of_the_highest_epoch_wins_over_a_sentinel_that_missed_the_failover():
    # s1 was cut off during the failover and still names the old primary (epoch 3).
    answers = [answer("s1", 6379, 3), answer("s2", 6380, 4), answer("s3", 6380, 4)]
    assert choose_primary(answers).primary == ("10.0.0.1", 6380)
    # Order does not matter, nor does a majority: the epoch does.
    assert choose_primary([answer("s2", 6380, 4), answer("s1", 6379, 3)]).primary[1] == 6380


def test_a_primary_its_sentinel_thinks_is_down_is_not_taken():
    answers = [answer("s1", 6379, 3, "master,s_down,o_down,failover_in_progress")]
    assert choose_primary(answers) is None
    answers.append(answer("s2", 6379, 3, "master,s_down"))
    assert choose_primary(answers) is None
    answers.append(answer("s3", 6379, 2))
    assert choose_primary(answers).sentinel == "s3"


def test_no_answer_means_no_primary():
    errors = [SentinelAnswer("s1", error="ConnectionError: refused"), SentinelAnswer("s2", error="timeout")]
    assert choose_primary(errors) is None
    assert choose_primary([]) is None


def test_sentinel_master_reply_is_read_by_name():
    flat = [b"name", b"realtime-glue", b"ip", b"10.0.0.2", b"port", b"6379", b"config-epoch", b"7"]
    assert parse_master_state(flat) == {
        "name": "realtime-glue",
        "ip": "10.0.0.2",
        "port": "6379",
        "config-epoch": "7",
    }


def test_a_resp3_map_reads_the_same():
    assert parse_master_state({b"ip": b"10.0.0.2", b"config-epoch": b"7"}) == {
        "ip": "10.0.0.2",
        "config-epoch": "7",
    }


def test_between_primaries_of_one_epoch_the_most_named_then_the_one_in_use_wins():
    catching_up = [answer("s1", 6379, 4), answer("s2", 6380, 4), answer("s3", 6380, 4)]
    assert choose_primary(catching_up).primary[1] == 6380
    split = [answer("s1", 6379, 4), answer("s2", 6380, 4)]
    assert choose_primary(split, prefer=("10.0.0.1", 6379)).primary[1] == 6379
    assert choose_primary(split, prefer=("10.0.0.1", 6380)).primary[1] == 6380
