"""MLflow access: the tracking client, the target run, and the calls the bridge makes.

Everything here that talks to MLflow runs on a bridge's worker thread (see
:mod:`hf_eco2ai.exporters.mlflow.bridge`); MLflow is imported by :meth:`MlflowRuns.connect`,
on first use, never at import.

Which run: the explicit ``run_id``, else ``MLFLOW_RUN_ID``, else the run active in this process
(:func:`active_mlflow_run_id`), else one run the bridges of this process create together and
the last of them ends.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import threading
import urllib.parse
from collections.abc import Sequence
from typing import Any

from hf_eco2ai.exporters.mlflow.keys import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MetricPoint,
)
from hf_eco2ai.exporters.mlflow.summary import RunSummary

_LOG = logging.getLogger(__name__)

REMOTE_SCHEMES = frozenset({"http", "https", "databricks", "databricks-uc", "uc"})
"""Tracking URIs served by a server: connecting creates no store locally."""
CREATED_BY_TAG = "hf_eco2ai.created_by"


def active_mlflow_run_id() -> str | None:
    """The MLflow run active in this process, in any thread; None when none (never raises).

    ``mlflow.active_run()`` is thread-local since MLflow 2.x, and exporters run on their own
    threads, so the other threads' run stacks are read too (the main thread's first). MLflow is
    not imported here: when the program never imported it, no run can be active.
    """
    fluent = sys.modules.get("mlflow.tracking.fluent")
    if fluent is None:
        return None
    try:
        run = fluent.active_run()
        if run is not None:
            return str(run.info.run_id)
        stacks: list[Any] = []
        holder = getattr(fluent, "_active_run_stack", None)
        if isinstance(holder, list):  # older MLflow: one process-wide stack
            stacks.append(holder)
        elif holder is not None and hasattr(holder, "get_all_thread_values"):
            by_thread: dict[int, Any] = dict(holder.get_all_thread_values())
            main = threading.main_thread().ident
            if main in by_thread:
                stacks.append(by_thread.pop(main))
            stacks.extend(by_thread.values())
        for stack in stacks:
            if stack:
                return str(stack[-1].info.run_id)
    except Exception:
        _LOG.debug("hf-eco2ai: could not read MLflow's active run", exc_info=True)
    return None


# Runs created by the bridges of this process, shared: `--metrics_exporter mlflow` and
# `--traces_exporter mlflow` log to one run, whichever shuts down first. MLflow accepts data
# for a FINISHED run; the last bridge to shut down ends it (again). Key: (tracking URI,
# experiment, run name).
_CREATED_LOCK = threading.Lock()
_CREATED: dict[tuple[str, str, str], list[Any]] = {}  # key -> [run_id, number of holders]
# One store set-up at a time per process: two bridges creating the same sqlite schema at once
# would race on its migrations.
_CONNECT_LOCK = threading.Lock()


def forget_created_runs() -> None:
    """Forget the runs the bridges of this process created (tests: a fresh store each)."""
    with _CREATED_LOCK:
        _CREATED.clear()


class MlflowRuns:
    """Tracking client and target run, used on a bridge's worker thread only."""

    def __init__(
        self,
        tracking_uri: str | None,
        experiment_name: str | None,
        run_id: str | None,
        run_name: str | None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_id = run_id
        self.run_name = run_name
        self.created_run_id: str | None = None
        self._created_key: tuple[str, str, str] | None = None
        self._client: Any = None
        self.entities: Any = None
        self.connected = False

    def _uri(self) -> str:
        return self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")

    @property
    def remote(self) -> bool:
        """True when the tracking URI names a server (HTTP, Databricks)."""
        return urllib.parse.urlsplit(self._uri()).scheme in REMOTE_SCHEMES

    def probe(self, timeout_s: float) -> None:
        """Fail fast when an HTTP tracking server does not accept connections.

        MLflow's own client retries a refused connection for minutes; a TCP connect that fails
        (at once when refused, within ``timeout_s`` otherwise) ends the attempt instead.
        """
        parts = urllib.parse.urlsplit(self._uri())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((parts.hostname, port), timeout=timeout_s):
                pass
        except OSError as exc:
            raise ConnectionError(
                f"tracking server {parts.hostname}:{port} unreachable: {exc}"
            ) from exc

    def client(self) -> Any:
        """The ``MlflowClient`` (MLflow imported on the first call)."""
        if self._client is None:
            tracking = importlib.import_module("mlflow.tracking")
            self.entities = importlib.import_module("mlflow.entities")
            self._client = tracking.MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def connect(self) -> None:
        """Start-up: import MLflow, build the client and, for a local store, open it.

        Opening a new sqlite store creates its schema (many migrations: seconds on a slow
        machine). A server is not contacted here: its first call is an ordinary one.
        """
        client = self.client()
        if not self.remote:
            with _CONNECT_LOCK:
                client.search_experiments(max_results=1)
        self.connected = True

    def _experiment(self) -> str:
        return (
            self.experiment_name
            or os.environ.get("MLFLOW_EXPERIMENT_NAME")
            or "id:" + os.environ.get("MLFLOW_EXPERIMENT_ID", "0")
        )

    def _experiment_id(self, client: Any) -> str:
        experiment = self._experiment()
        if experiment.startswith("id:"):
            return experiment[3:]
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            return str(found.experiment_id)
        return str(client.create_experiment(experiment))

    def target(self, active_run_id: str | None) -> str:
        """The run to log to; creates one only when no run is given or active."""
        explicit = self.run_id or os.environ.get("MLFLOW_RUN_ID")
        if explicit:
            return explicit
        if active_run_id:
            return active_run_id
        if self.created_run_id is None:
            client = self.client()
            name = self.run_name or os.environ.get("OTEL_SERVICE_NAME") or "hf-eco2ai"
            key = (self._uri(), self._experiment(), name)
            with _CREATED_LOCK:
                entry = _CREATED.get(key)
            if entry is None:  # create outside the lock: a hung server must not block others
                run = client.create_run(
                    self._experiment_id(client),
                    run_name=name,
                    tags={CREATED_BY_TAG: "hf-eco2ai MLflow bridge"},
                )
                mine = str(run.info.run_id)
                with _CREATED_LOCK:
                    entry = _CREATED.setdefault(key, [mine, 0])
                if entry[0] == mine:
                    _LOG.info("hf-eco2ai: logging to new MLflow run %s (%s)", mine, name)
                else:  # another bridge created one meanwhile: use that one
                    client.delete_run(mine)
            with _CREATED_LOCK:
                entry[1] += 1
            self.created_run_id = str(entry[0])
            self._created_key = key
        return self.created_run_id

    def log_metrics(self, run_id: str, points: Sequence[MetricPoint]) -> None:
        """``log_batch`` the points, at most MLflow's 1000 per call."""
        client = self.client()
        metric = self.entities.Metric
        for start in range(0, len(points), MAX_METRICS_PER_BATCH):
            chunk = [
                metric(p.key, p.value, p.timestamp_ms, p.step)
                for p in points[start : start + MAX_METRICS_PER_BATCH]
            ]
            client.log_batch(run_id, metrics=chunk, synchronous=True)

    def log_summary(self, run_id: str, summary: RunSummary) -> None:
        """Metrics, new params, and tags (a changed param becomes a ``….latest`` tag)."""
        client = self.client()
        entities = self.entities
        existing = dict(client.get_run(run_id).data.params)
        params = {}
        tags = dict(summary.tags)
        for key, value in summary.params.items():
            if key in existing and existing[key] != value:
                # params are immutable in MLflow: a second run in the same MLflow run keeps the
                # first value as param and records its own as a tag
                tags[f"{key}.latest"] = value
            elif key not in existing:
                params[key] = value
        self.log_metrics(run_id, summary.metrics)
        param_items = [entities.Param(k, v) for k, v in params.items()]
        tag_items = [entities.RunTag(k, v) for k, v in tags.items()]
        for start in range(0, max(len(param_items), len(tag_items)), MAX_PARAMS_TAGS_PER_BATCH):
            end = start + MAX_PARAMS_TAGS_PER_BATCH
            client.log_batch(
                run_id, params=param_items[start:end], tags=tag_items[start:end], synchronous=True
            )

    def end_created_run(self) -> None:
        """Release the created run; the last bridge holding it ends it (FINISHED)."""
        if self._created_key is None:
            return
        with _CREATED_LOCK:
            entry = _CREATED.get(self._created_key)
            last = entry is not None and entry[1] <= 1
            if entry is not None:
                # the entry stays: a bridge that starts logging later (a span exporter flushing
                # at exit after the metrics exporter ended) reuses the run, and ends it again
                entry[1] -= 1
            self._created_key = None
        if last and self.created_run_id is not None:
            self.client().set_terminated(self.created_run_id, "FINISHED")
