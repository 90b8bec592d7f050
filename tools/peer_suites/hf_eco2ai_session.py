"""pytest plugin: hf-eco2ai instrumentation switched on for a whole pytest session.

It runs the test suites of the libraries hf-eco2ai patches (transformers, Lightning) with the
instrumentation active, to check that they cannot tell (``docs/compatibility.md``). Load it with
``-p hf_eco2ai_session`` and this folder on ``PYTHONPATH``::

    PYTHONPATH=$PWD/src:$PWD/tools/peer_suites python -m pytest -p hf_eco2ai_session FILES

At ``pytest_configure`` it builds an SDK ``TracerProvider`` (spans kept in memory) and an SDK
``MeterProvider`` (an in-memory reader), neither set as the global provider, and calls
``HFEco2AIInstrumentor().instrument(tracer_provider=..., meter_provider=..., config=...)`` with
``CarbonConfig.from_env()``: the defaults, unless ``OTEL_PYTHON_HF_ECO2AI_*`` variables say
otherwise. At ``pytest_unconfigure`` it uninstruments and shuts the providers down. The terminal
summary says what was measured (spans by name, metric names), so a session in which nothing
was measured cannot pass for a compatible one, and lists any hf-eco2ai thread still alive after
``uninstrument()``.

Example (the session is a plain object; pytest drives it through the hooks below):
    >>> session = InstrumentedSession()
    >>> session.active
    False
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

_THREAD_PREFIX = "hf-eco2ai"


class InstrumentedSession:
    """The providers, the instrumentor and what they saw, for one pytest session."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.instrumentor: Any = None
        self.config_repr = ""
        self.metric_names: set[str] = set()
        self.threads_left: list[str] = []

    @property
    def active(self) -> bool:
        """Whether ``start()`` instrumented and ``stop()`` has not yet run."""
        return self.instrumentor is not None

    def start(self) -> None:
        """Instrument with the SDK providers and the configuration from the environment."""
        from hf_eco2ai import CarbonConfig, HFEco2AIInstrumentor

        config = CarbonConfig.from_env()
        self.config_repr = repr(config)
        instrumentor = HFEco2AIInstrumentor()
        instrumentor.instrument(
            tracer_provider=self.tracer_provider,
            meter_provider=self.meter_provider,
            config=config,
        )
        self.instrumentor = instrumentor

    def stop(self) -> None:
        """Collect the metric names, uninstrument, shut the providers down, list our threads."""
        if self.instrumentor is None:
            return
        data = self.reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data is not None else ():
            for scope_metrics in resource_metrics.scope_metrics:
                self.metric_names.update(metric.name for metric in scope_metrics.metrics)
        self.instrumentor.uninstrument()
        self.instrumentor = None
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.threads_left = [
            f"{thread.name} (daemon={thread.daemon})"
            for thread in threading.enumerate()
            if thread.name.startswith(_THREAD_PREFIX)
        ]

    def summary_lines(self) -> list[str]:
        """What the session measured, for the terminal summary."""
        names = Counter(span.name for span in self.spans.get_finished_spans())
        span_text = ", ".join(f"{name} x{count}" for name, count in sorted(names.items()))
        return [
            f"config: {self.config_repr}",
            f"spans finished: {sum(names.values())} ({span_text or 'none'})",
            f"metric names with data: {len(self.metric_names)}"
            + (f" ({', '.join(sorted(self.metric_names))})" if self.metric_names else ""),
            "hf-eco2ai threads alive after uninstrument(): "
            + (", ".join(self.threads_left) if self.threads_left else "none"),
        ]


_SESSION_KEY = pytest.StashKey[InstrumentedSession]()


def pytest_configure(config: pytest.Config) -> None:
    """Instrument before any test module is imported or collected."""
    session = InstrumentedSession()
    session.start()
    config.stash[_SESSION_KEY] = session


def pytest_unconfigure(config: pytest.Config) -> None:
    """Uninstrument once the session is over (also when it was interrupted)."""
    session = config.stash.get(_SESSION_KEY, None)
    if session is not None:
        session.stop()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Uninstrument, then report what the session measured."""
    session = config.stash.get(_SESSION_KEY, None)
    if session is None:
        return
    session.stop()
    terminalreporter.section("hf-eco2ai instrumentation (whole session)")
    for line in session.summary_lines():
        terminalreporter.write_line(line)
