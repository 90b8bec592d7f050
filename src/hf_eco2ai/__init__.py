"""hf-eco2ai: carbon and energy telemetry for ML training, native to OpenTelemetry.

Importing this package starts nothing: no thread, no NVML, no network. Measurement begins with
``HFEco2AIInstrumentor().instrument()`` (or ``opentelemetry-instrument``), or when a Trainer with
an :class:`Eco2AICallback` starts training.

Example:
    >>> import hf_eco2ai
    >>> hf_eco2ai.CarbonConfig(country="FR").country
    'FR'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hf_eco2ai.config import CarbonConfig
from hf_eco2ai.errors import ConfigError
from hf_eco2ai.instrumentor import HFEco2AIInstrumentor
from hf_eco2ai.integrations.measure import Measure, Measurement, flush, measure
from hf_eco2ai.version import __version__

if TYPE_CHECKING:
    from hf_eco2ai.integrations.transformers_callback import Eco2AICallback

__all__ = [
    "CarbonConfig",
    "ConfigError",
    "Eco2AICallback",
    "HFEco2AIInstrumentor",
    "Measure",
    "Measurement",
    "__version__",
    "flush",
    "measure",
]


def __getattr__(name: str) -> Any:
    # Eco2AICallback subclasses transformers.TrainerCallback: import transformers only on use.
    if name == "Eco2AICallback":
        from hf_eco2ai.integrations.transformers_callback import Eco2AICallback

        return Eco2AICallback
    raise AttributeError(f"module 'hf_eco2ai' has no attribute {name!r}")
