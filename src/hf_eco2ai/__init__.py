"""hf-eco2ai: carbon and energy telemetry for ML training, native to OpenTelemetry."""

from hf_eco2ai.version import __version__

__all__ = ["__version__"]
