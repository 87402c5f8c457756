"""The format stage: the JSON text a browser receives."""

from __future__ import annotations

import json

import pytest
from conftest import message

from realtime_glue.errors import Reject
from realtime_glue.stages.format import Format


def test_body_holds_id_channel_event_data(context):
    out = Format({}, context).process(
        message(channel="news", event="comment", data={"text": "\u00e9t\u00e9"}, job_id="abc123")
    )
    assert json.loads(out.body) == {
        "id": "abc123",
        "channel": "news",
        "event": "comment",
        "data": {"text": "\u00e9t\u00e9"},
    }
    assert out.event_id == "abc123"
    assert "\u00e9t\u00e9".encode() in out.body


def test_event_id_is_the_job_id_every_time(context):
    stage = Format({}, context)
    assert stage.process(message(job_id="j1")).event_id == "j1"
    assert stage.process(message(job_id="j2")).event_id == "j2"


def test_channel_can_be_left_out(context):
    out = Format({"include_channel": False}, context).process(message(job_id="j"))
    assert "channel" not in json.loads(out.body)
    assert json.loads(out.body)["id"] == "j"


@pytest.mark.parametrize(
    "job_id", ["j1\r\nX-Injected: 1", "j1\nevent: forged", "with space", "", "x" * 129, "caf\u00e9"]
)
def test_a_job_id_that_cannot_be_an_event_id_is_rejected(context, job_id):
    """The job id becomes an HTTP header and an EventSource `id:` line: CR, LF and the rest
    would let a producer forge headers or events (a Thoonk producer may pick any id)."""
    with pytest.raises(Reject, match="cannot be an event id"):
        Format({}, context).process(message(job_id=job_id))
