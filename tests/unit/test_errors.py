"""One error hierarchy: every error the glue raises on purpose has GlueError as its base."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import realtime_glue
from realtime_glue.errors import (
    ConfigError,
    GlueError,
    JobError,
    PublishFailed,
    Reject,
    TransientFailure,
)


def test_the_job_errors_say_what_the_worker_does():
    assert issubclass(Reject, JobError) and issubclass(TransientFailure, JobError)
    assert issubclass(PublishFailed, TransientFailure)  # a node failing now: retry later
    assert not issubclass(Reject, TransientFailure)
    assert issubclass(ConfigError, GlueError) and issubclass(JobError, GlueError)


def test_no_module_defines_an_exception_outside_the_hierarchy():
    strays = []
    for module_info in pkgutil.walk_packages(realtime_glue.__path__, "realtime_glue."):
        if module_info.name == "realtime_glue.cli":
            continue  # monkey-patches on import; defines no exception
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not issubclass(value, GlueError)
            ):
                strays.append(f"{module.__name__}.{name}")
    assert strays == []
