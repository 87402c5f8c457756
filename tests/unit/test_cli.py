"""`realtime-glue check-config`, run as the user runs it (a subprocess: the CLI monkey-patches)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GLUE = Path(__file__).resolve().parents[2] / "glue"
# sysexits.h EX_CONFIG: systemd shows it as status=78/CONFIG and the unit does not restart on it.
EX_CONFIG = 78
SHIPPED_CONFIG = GLUE / "etc" / "glue.toml"


def realtime_glue(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(GLUE)}
    env.pop("REALTIME_GLUE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "realtime_glue.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_shipped_config_checks_out():
    result = realtime_glue("-c", str(SHIPPED_CONFIG), "check-config")
    assert result.returncode == 0, result.stderr
    assert "pipeline demo: feed demo: json -> anonymize -> format -> validate -> http" in result.stdout
    assert f"{SHIPPED_CONFIG}: OK" in result.stdout


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "[pipelines.x]\nstages = ['json']\nconcurrency = 'many'\n",
            "pipelines.x.concurrency: expected an integer >= 1, got 'many'",
        ),
        (
            "[pipelines.x]\nstages = ['json', 'format']\n[pipelines.x.json]\nmax_bytes = -5\n",
            "pipelines.x.json.max_bytes: must be positive (got -5)",
        ),
        (
            "[pipelines.x]\nstages = ['json', 'format']\n[pipelines.x.format]\ncolour = 'red'\n",
            "pipelines.x.format.colour: unknown option of stage 'format'",
        ),
        (
            "[pipelines.x]\nstages = ['json', 'fromat']\n",
            "pipelines.x.stages[1]: unknown stage 'fromat'",
        ),
        (
            "[pipelines.x]\npreset = 'json-anon-http'\n",
            "push.nodes: pipeline 'x' publishes over http but no push node is listed",
        ),
        ("[pipeline.x]\n", "pipeline: unknown section"),
    ],
)
def test_a_bad_config_exits_78_naming_the_key(config, message, tmp_path):
    path = tmp_path / "glue.toml"
    path.write_text(config)
    result = realtime_glue("-c", str(path), "check-config")
    assert result.returncode == EX_CONFIG, (result.stdout, result.stderr)
    assert f"realtime-glue: config error: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "OK" not in result.stdout


def test_an_unparsable_config_exits_78_naming_the_file(tmp_path):
    path = tmp_path / "glue.toml"
    path.write_text("[redis\n")
    result = realtime_glue("-c", str(path), "check-config")
    assert result.returncode == EX_CONFIG
    assert result.stderr.startswith(f"realtime-glue: config error: {path} is not valid TOML: ")


def test_a_key_file_others_can_read_is_named_with_its_pipeline(tmp_path):
    key = tmp_path / "key"
    key.write_bytes(bytes(32))
    os.chmod(key, 0o644)
    path = tmp_path / "glue.toml"
    path.write_text(
        "[push]\nnodes = ['http://127.0.0.1:9']\n"
        f"[pipelines.s]\npreset = 'json-secure-http'\n[pipelines.s.encrypt]\nkey_file = '{key}'\n"
    )
    result = realtime_glue("-c", str(path), "check-config")
    assert result.returncode == EX_CONFIG
    assert "config error: pipelines.s.encrypt.key_file: key file" in result.stderr
    os.chmod(key, 0o600)
    assert realtime_glue("-c", str(path), "check-config").returncode == 0


def test_a_missing_config_file_exits_78(tmp_path):
    result = realtime_glue("-c", str(tmp_path / "absent.toml"), "check-config")
    assert result.returncode == EX_CONFIG
    assert "config error: cannot read config file" in result.stderr


def test_a_yaml_config_is_checked_too(tmp_path):
    path = tmp_path / "glue.yaml"
    path.write_text("pipelines:\n  a:\n    stages: [json, format, validate]\n")
    result = realtime_glue("-c", str(path), "check-config")
    assert result.returncode == 0, result.stderr
    assert "pipeline a: feed a: json -> format -> validate" in result.stdout
