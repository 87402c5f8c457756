"""Every stage by name, and the presets built from them.

The one module that imports the stage and publisher modules: adding a stage
is one import and one entry in STAGES. The config (which tables a pipeline
may have), the pipeline builder and the presets all read from here.
"""

from __future__ import annotations

from .publishers.file import FilePublish
from .publishers.firehose import FirehosePublish
from .publishers.http import HttpPublish
from .publishers.webpush import WebPushPublish
from .stage import Stage
from .stages.anonymize import Anonymize
from .stages.encrypt import Encrypt
from .stages.format import Format
from .stages.json_envelope import JsonEnvelope
from .stages.validate import Validate

STAGES: dict[str, type[Stage]] = {
    cls.name: cls
    for cls in (
        JsonEnvelope,
        Anonymize,
        Encrypt,
        Format,
        Validate,
        HttpPublish,
        FilePublish,
        WebPushPublish,
        FirehosePublish,
    )
}

PRESETS: dict[str, list[str]] = {
    "json-anon-http": ["json", "anonymize", "format", "validate", "http"],
    "json-secure-http": ["json", "anonymize", "encrypt", "format", "validate", "http"],
    "json-anon-file": ["json", "anonymize", "format", "validate", "file"],
    # Reads a feed the chosen live pipelines mirror into; one channel per customer.
    "firehose": ["json", "anonymize", "format", "validate", "firehose"],
}

# Options a preset gives its stages unless the config says otherwise.
PRESET_OPTIONS: dict[str, dict[str, dict]] = {
    "json-secure-http": {"validate": {"require_encrypted": True}},
}


def stage_class(name: str) -> type[Stage] | None:
    return STAGES.get(name)
