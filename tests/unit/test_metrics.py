"""The glue's Prometheus registry: its own metrics, the process and GC collectors, build info."""

from __future__ import annotations

from prometheus_client import generate_latest

from realtime_glue import __version__
from realtime_glue.metrics import GlueMetrics
from realtime_glue.readers.metrics import ReadersMetrics


def test_the_registry_has_process_and_gc_metrics_and_build_info():
    text = generate_latest(GlueMetrics("comments").registry).decode()
    assert "\nprocess_resident_memory_bytes " in text
    assert "\nprocess_open_fds " in text
    assert "python_gc_objects_collected_total{" in text
    assert f'glue_build_info{{pipeline="comments",version="{__version__}"}} 1.0' in text


def test_the_readers_unit_has_the_same_process_metrics_and_its_own_build_info():
    text = generate_latest(ReadersMetrics().registry).decode()
    assert "\nprocess_resident_memory_bytes " in text
    assert f'glue_readers_build_info{{version="{__version__}"}} 1.0' in text
    assert "\nglue_readers_total " in text
