"""What the live page tests share: nginx/live/ served by a push node, opened in headless chromium.

Each helper is a context manager the tests' fixtures wrap: a browser (the test is
skipped, saying why, when chromium cannot run here), push nodes serving the page, and
the glue of the comments pipeline publishing to them.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import browser as chromium
from support.glue_process import GlueProcess, write_config
from support.push_node import REPO, PushNode

LIVE_PAGE = REPO / "nginx" / "live"
ARTIFACTS = REPO / "build" / "artifacts"
STATE = "document.getElementById('status').dataset.state"
COMMENTS_PIPELINE = '[pipelines.comments]\npreset = "json-anon-http"\n'


@contextlib.contextmanager
def headless_browser(what: str, https: bool = False, **options) -> Iterator[chromium.Chromium]:
    """One started chromium (`options` as chromium.Chromium takes them); skips `what` when none can run."""
    why = chromium.missing(https=https)
    if why:
        print(f"skipping {what}: {why}")
        pytest.skip(why)
    page = chromium.Chromium(**options).start()
    try:
        yield page
    finally:
        page.cleanup()


@contextlib.contextmanager
def nodes_serving_the_page(
    count: int = 1, overrides: dict | None = None, **node_options
) -> Iterator[list[PushNode]]:
    """`count` started push nodes with nginx/live/ as their document root."""
    nodes = [
        PushNode(overrides={"push_stream_docroot": str(LIVE_PAGE), **(overrides or {})}, **node_options)
        for _ in range(count)
    ]
    try:
        for node in nodes:
            node.start()
            print(f"push node {node.name}, flavour {node.flavour}, {node.base_url}")
        yield nodes
    finally:
        for node in nodes:
            node.cleanup()


@contextlib.contextmanager
def comments_glue(redis_url: str, nodes: list[PushNode]) -> Iterator[GlueProcess]:
    """The real glue running the comments pipeline (json-anon-http) to `nodes`."""
    workdir = Path(tempfile.mkdtemp(prefix="glue-live-page-"))
    config = write_config(workdir, redis_url, [node.cluster_url for node in nodes], COMMENTS_PIPELINE)
    process = GlueProcess(config, "comments")
    process.start()
    try:
        yield process
    finally:
        process.terminate()
