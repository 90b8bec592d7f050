"""Process-wide state: the telemetry session of the active instrumentor, if any."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hf_eco2ai.telemetry.session import TelemetrySession

_active: TelemetrySession | None = None


def active_session() -> TelemetrySession | None:
    """The instrumentor's session while instrumented, else None."""
    return _active


def set_active_session(session: TelemetrySession | None) -> None:
    """Set by the instrumentor on instrument()/uninstrument()."""
    global _active
    _active = session
