"""The file stage: one JSON line per message, fsync policies, unwritable paths."""

from __future__ import annotations

import json
import os

import pytest
from conftest import message

from realtime_glue.errors import TransientFailure
from realtime_glue.publishers.file import FilePublish
from realtime_glue.stages.format import Format


@pytest.fixture
def fsyncs(monkeypatch):
    calls = []
    real_fsync = os.fsync

    def counting_fsync(fd):
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    return calls


def publish(stage, context, **fields):
    return stage.process(Format({}, context).process(message(**fields)))


def test_each_message_is_one_json_line(tmp_path, context):
    path = tmp_path / "sub" / "dir" / "out.jsonl"
    stage = FilePublish({"path": str(path), "fsync": "never"}, context)
    publish(stage, context, job_id="j1", channel="a", data={"text": "one\ntwo"})
    publish(stage, context, job_id="j2", channel="b", data={"text": "\u00e9"})
    stage.close()
    lines = path.read_bytes().splitlines()
    assert len(lines) == 2
    records = [json.loads(line) for line in lines]
    assert [(r["id"], r["channel"]) for r in records] == [("j1", "a"), ("j2", "b")]
    assert json.loads(records[0]["body"])["data"] == {"text": "one\ntwo"}
    assert json.loads(records[1]["body"])["data"] == {"text": "\u00e9"}


def test_lines_are_appended_across_restarts(tmp_path, context):
    path = tmp_path / "out.jsonl"
    for job_id in ("j1", "j2"):
        stage = FilePublish({"path": str(path)}, context)
        publish(stage, context, job_id=job_id)
        stage.close()
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["j1", "j2"]


def test_fsync_always_syncs_every_message(tmp_path, context, fsyncs):
    stage = FilePublish({"path": str(tmp_path / "out.jsonl"), "fsync": "always"}, context)
    for n in range(3):
        publish(stage, context, job_id=f"j{n}")
    assert len(fsyncs) == 3
    stage.close()
    assert len(fsyncs) == 4


def test_fsync_never_leaves_it_to_the_kernel(tmp_path, context, fsyncs):
    stage = FilePublish({"path": str(tmp_path / "out.jsonl"), "fsync": "never"}, context)
    for n in range(3):
        publish(stage, context, job_id=f"j{n}")
    stage.close()
    assert fsyncs == []


def test_fsync_interval_syncs_at_most_once_per_interval(tmp_path, context, fsyncs):
    stage = FilePublish({"path": str(tmp_path / "out.jsonl"), "fsync_interval": 3600}, context)
    for n in range(3):
        publish(stage, context, job_id=f"j{n}")
    assert fsyncs == []
    stage.close()
    assert len(fsyncs) == 1


def test_an_unwritable_path_is_a_transient_failure(tmp_path, context):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    stage = FilePublish({"path": str(blocker / "out.jsonl")}, context)
    with pytest.raises(TransientFailure, match=r"file: cannot write .*not-a-dir/out.jsonl"):
        publish(stage, context)


def test_a_directory_as_path_is_a_transient_failure(tmp_path, context):
    stage = FilePublish({"path": str(tmp_path)}, context)
    with pytest.raises(TransientFailure, match="Is a directory"):
        publish(stage, context)
