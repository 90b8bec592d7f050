"""The errors hf-eco2ai raises, in a leaf module that imports nothing of hf-eco2ai.

Any module may import it (the carbon tables raise :class:`ConfigError` for ``carbon_table``)
without importing :mod:`hf_eco2ai.config`. ``ConfigError`` is re-exported there and at the top
level, where users catch it.

Example:
    >>> from hf_eco2ai.errors import ConfigError
    >>> err = ConfigError("pue", 7, "a number between 1 and 3")
    >>> print(err)
    hf-eco2ai: invalid value for 'pue' (env OTEL_PYTHON_HF_ECO2AI_PUE): 7; allowed: a number between 1 and 3
    >>> isinstance(err, ValueError), err.field_name
    (True, 'pue')
"""

from __future__ import annotations

ENV_PREFIX = "OTEL_PYTHON_HF_ECO2AI_"
"""Every setting ``foo`` is read from the environment variable ``OTEL_PYTHON_HF_ECO2AI_FOO``."""


def env_var_name(field_name: str) -> str:
    """The environment variable that sets ``field_name``.

    >>> env_var_name("pue")
    'OTEL_PYTHON_HF_ECO2AI_PUE'
    """
    return ENV_PREFIX + field_name.upper()


class ConfigError(ValueError):
    """A configuration value is invalid; the message names field, env var, value and what is allowed."""

    def __init__(self, field_name: str, value: object, allowed: str) -> None:
        self.field_name = field_name
        self.value = value
        self.allowed = allowed
        env = env_var_name(field_name)
        super().__init__(
            f"hf-eco2ai: invalid value for '{field_name}' (env {env}): {value!r}; allowed: {allowed}"
        )
