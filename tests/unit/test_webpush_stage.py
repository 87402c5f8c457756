"""The webpush stage without servers: its options, whom a job addresses, what it refuses."""

from __future__ import annotations

import re

import pytest
from conftest import message

from realtime_glue.errors import ConfigError, Reject, TransientFailure
from realtime_glue.publishers.webpush import WebPushPublish
from realtime_glue.webpush.ece import MAX_PLAINTEXT_BYTES
from realtime_glue.webpush.vapid import VapidKey


@pytest.fixture
def options(key_file):
    return {
        "vapid_key_file": key_file(VapidKey.generate().pem(), "vapid.pem"),
        "vapid_subject": "mailto:ops@example.org",
    }


def test_a_stage_with_defaults_is_built(context, options):
    stage = WebPushPublish(options, context)
    assert (stage.user_field, stage.ttl, stage.urgency, stage.rate_limit) == (
        "data.user_id",
        86400,
        "normal",
        10,
    )
    stage.close()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"vapid_key_file": None}, "vapid_key_file: required"),
        ({"vapid_subject": "ops@example.org"}, "vapid_subject: expected a contact as mailto:"),
        ({"urgency": "asap"}, "urgency: very-low | low | normal | high"),
        ({"ttl": 10**9}, "ttl: seconds from 0 to"),
        ({"user_field": "user_id"}, "user_field: a dotted path starting with channel, event or data"),
        ({"listen": "127.0.0.1:9400"}, "token_key_file: required with `listen`"),
        ({"listen": "nowhere"}, "listen: expected host:port"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file: cannot read"),
        ({"colour": "red"}, "colour: unknown option of stage 'webpush'"),
    ],
)
def test_option_problems_name_the_option(context, options, change, problem):
    options = {k: v for k, v in {**options, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=re.escape(problem)):
        WebPushPublish(options, context)


def test_a_vapid_key_others_can_read_is_refused(context, options, key_file):
    options["vapid_key_file"] = key_file(VapidKey.generate().pem(), "open.pem", mode=0o640)
    with pytest.raises(ConfigError, match=r"vapid_key_file: key file .* is readable by others"):
        WebPushPublish(options, context)


@pytest.mark.parametrize(
    ("data", "users"),
    [
        ({"user_id": "ada"}, ["ada"]),
        ({"user_id": 42}, ["42"]),
        ({"user_id": ["ada", "bob", "ada"]}, ["ada", "bob"]),
        ({"text": "for everyone"}, []),
        ({"user_id": None}, []),
    ],
)
def test_whom_a_job_addresses(context, options, data, users):
    stage = WebPushPublish(options, context)
    assert stage.users_of(message(data=data)) == users


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"user_id": {"id": 1}}, "a user id must be a non-empty string"),
        ({"user_id": True}, "a user id must be a non-empty string"),
        ({"user_id": [str(n) for n in range(101)]}, "names 101 users, the limit is 100"),
    ],
)
def test_a_malformed_address_is_rejected(context, options, data, problem):
    with pytest.raises(Reject, match=problem):
        WebPushPublish(options, context).users_of(message(data=data))


def test_an_operator_names_the_field(context, options):
    stage = WebPushPublish({**options, "user_field": "data.to.user"}, context)
    assert stage.users_of(message(data={"to": {"user": "ada"}})) == ["ada"]


def test_what_the_stage_refuses_and_what_passes_through(context, options):
    stage = WebPushPublish(options, context)  # no Redis in this context
    unformatted = message(data={"user_id": "ada"})
    too_big = message(data={"user_id": "ada"}, body=b"x" * (MAX_PLAINTEXT_BYTES + 1))
    nobody = message(data={"text": "hi"}, body=b"{}")
    addressed = message(data={"user_id": "ada"}, body=b"{}")
    errors = stage.process_batch([unformatted, too_big, nobody, addressed])
    assert isinstance(errors[0], Reject) and "format stage" in str(errors[0])
    assert isinstance(errors[1], Reject) and "send a link, not the content" in str(errors[1])
    assert errors[2] is None  # addressed to nobody: untouched, so the stage can stand beside http
    assert isinstance(errors[3], TransientFailure)  # Redis away: retried later
