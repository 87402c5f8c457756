"""Pipelines: a named list of stages, built from the config through the registry."""

from __future__ import annotations

from .errors import ConfigError
from .message import Message
from .registry import PRESET_OPTIONS, STAGES
from .stage import Stage, StageContext


class Pipeline:
    def __init__(self, name: str, stages: list[Stage]):
        self.name = name
        self.stages = stages

    def run(self, message: Message) -> Message:
        for stage in self.stages:
            message = stage.process(message)
        return message

    def run_batch(self, messages: list[Message]) -> list[Exception | None]:
        """Run messages through the stages together; per message, None or its error.

        A stage with `process_batch` (the http publisher) gets the whole
        batch at once; the others take the messages one by one. A message
        that fails a stage goes no further.
        """
        errors: list[Exception | None] = [None] * len(messages)
        live = list(range(len(messages)))
        for stage in self.stages:
            batch = getattr(stage, "process_batch", None)
            if batch is not None:
                try:
                    outcome = batch([messages[i] for i in live])
                except Exception as exc:  # a bug in the stage: every message of the batch failed
                    outcome = [exc] * len(live)
                for index, error in zip(live, outcome, strict=True):
                    errors[index] = error
            else:
                for index in live:
                    try:
                        messages[index] = stage.process(messages[index])
                    except Exception as exc:
                        errors[index] = exc
            live = [i for i in live if errors[i] is None]
            if not live:
                break
        return errors

    def start(self) -> None:
        for stage in self.stages:
            start = getattr(stage, "start", None)
            if start is not None:
                start()

    def partition_taken(self) -> None:
        for stage in self.stages:
            stage.partition_taken()

    def close(self) -> None:
        for stage in self.stages:
            stage.close()

    def stage(self, name: str) -> Stage | None:
        return next((s for s in self.stages if s.name == name), None)

    def __repr__(self) -> str:
        return f"Pipeline({self.name}: {' -> '.join(s.name for s in self.stages)})"


def build_pipeline(
    name: str, stage_names: list[str], options: dict[str, dict], context: StageContext, preset: str = ""
) -> Pipeline:
    """Build the stages in order; a ConfigError names the offending key."""
    defaults = PRESET_OPTIONS.get(preset, {})
    stages: list[Stage] = []
    for index, stage_name in enumerate(stage_names):
        cls = STAGES.get(stage_name)
        if cls is None:
            raise ConfigError(
                f"stages[{index}]", f"unknown stage {stage_name!r}; known: {', '.join(sorted(STAGES))}"
            )
        stage_options = {**defaults.get(stage_name, {}), **options.get(stage_name, {})}
        anonymize = next((s for s in stages if s.name == "anonymize"), None)
        if stage_name == "validate" and "forbid_fields" not in stage_options and anonymize is not None:
            # A validate stage after anonymize checks that the dropped fields are gone.
            stage_options["forbid_fields"] = [path[-1] for path in anonymize.drop]
        if stage_name == "validate" and "wildcard_prefix" in options.get("json", {}):
            # Check channels against the same wildcard prefix the json stage was told of.
            stage_options.setdefault("wildcard_prefix", options["json"]["wildcard_prefix"])
        try:
            stages.append(cls(stage_options, context))
        except ConfigError as exc:
            raise exc.under(stage_name) from None
    return Pipeline(name, stages)
