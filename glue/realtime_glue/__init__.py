"""realtime-glue: Thoonk job feeds -> pipelines of small stages -> push nodes."""

__version__ = "0.1.0"
