"""Hostile live carbon-intensity servers: only what tests/unit/test_carbon_providers.py lacks.

Already covered there (not repeated): 5xx/4xx/429, malformed JSON, NaN/Infinity, wrong types,
out-of-range values, wrong units or zone, bodies over the size limit with and without
Content-Length, redirects (refused), slow responses and trickled bodies (time-boxed),
connection refused, a parser bug, token scrubbing. Added here: deeply nested JSON, header
floods, and a hanging provider inside a running sampler, with the failure counted in the
``hf_eco2ai.carbon_intensity.errors`` metric.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from hf_eco2ai import CarbonConfig
from hf_eco2ai.carbon.intensity import CarbonIntensity
from hf_eco2ai.carbon.providers import ElectricityMapsProvider
from hf_eco2ai.energy_monitor import EnergyMonitor
from hf_eco2ai.telemetry.session import TelemetrySession
from tests.conftest import FAKE_CPU, ConstantSensor
from tests.reliability.conftest import Telemetry

FALLBACK = CarbonIntensity(381.0, zone="DE", source="table:owid@2023")
TOKEN = "tok-reliability-0123456789"


class RawServer:
    """Answers every connection with ``response`` (raw bytes), or never when it is None."""

    def __init__(self, response: bytes | None) -> None:
        self.response = response
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.response is None:
                self.held.append(conn)  # accept, never answer
                continue
            try:
                conn.recv(65536)
                conn.sendall(self.response)
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def raw() -> Iterator[list[RawServer]]:
    servers: list[RawServer] = []
    yield servers
    for server in servers:
        server.close()


def _response(body: bytes, headers: list[str] | None = None) -> bytes:
    lines = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *(headers or [])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize(
    ("response", "kind"),
    [
        (_response(b"[" * 50_000 + b"]" * 50_000, ["Content-Type: application/json"]), "too-large"),
        (_response(b"[" * 20_000 + b"]" * 20_000), "json"),  # under the size limit, too deep
        (_response(b"{}", [f"X-Junk-{i}: {'x' * 50}" for i in range(200)]), "network"),
        (_response(b"{}", ["X-Huge: " + "x" * 100_000]), "network"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n{}", "too-large"),
        (b"garbage that is not HTTP\r\n\r\n", "network"),
    ],
    ids=["huge-nested", "deep-nested", "header-flood", "huge-header", "lying-length", "not-http"],
)
def test_hostile_responses_are_refused_counted_and_fall_back(
    raw: list[RawServer], response: bytes, kind: str
) -> None:
    """Would catch: a RecursionError, a header-parsing exception or a memory blow-up escaping
    the provider (into the sampler thread), and a rejected value being used."""
    server = RawServer(response)
    raw.append(server)
    provider = ElectricityMapsProvider(
        "DE", TOKEN, fallback=FALLBACK, base_url=server.url, background=False, timeout=2.0
    )
    provider.maybe_refresh(0.0)
    assert provider.current() is FALLBACK
    assert provider.errors == 1
    assert provider.last_error == kind


def test_hanging_provider_never_delays_sampling_and_is_counted(
    raw: list[RawServer], telemetry: Telemetry
) -> None:
    """The provider's server accepts and never answers while the sampler runs at 20 Hz.
    Would catch: a fetch made on the sampler thread (ticks stall for the whole timeout), a
    fetch without a time limit, and the failure not visible in the errors metric."""
    server = RawServer(None)
    raw.append(server)
    provider = ElectricityMapsProvider(
        "DE", TOKEN, fallback=FALLBACK, base_url=server.url, timeout=0.6, refresh_interval=3600
    )
    config = CarbonConfig(sample_interval=0.05)
    monitor = EnergyMonitor(
        config, sensors=[ConstantSensor([(FAKE_CPU, 50.0)])], intensity=provider
    )
    session = TelemetrySession(config, meter_provider=telemetry.meter_provider, monitor=monitor)
    try:
        started = time.monotonic()
        seq = monitor.snapshot().seq
        time.sleep(0.5)  # the fetch hangs meanwhile
        ticks = monitor.snapshot().seq - seq
        assert ticks >= 4, f"only {ticks} sampler ticks in 0.5 s while the fetch hung"
        provider.wait(2.0)
        assert time.monotonic() - started < 3.0
        assert provider.last_error == "timeout"
        time.sleep(0.1)
        assert monitor.snapshot().intensity is FALLBACK
        (point,) = telemetry.points("hf_eco2ai.carbon_intensity.errors")
        assert point.value == 1
    finally:
        session.close()
    assert server.connections == 1
