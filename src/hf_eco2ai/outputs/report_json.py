"""``report.json``: the run report as JSON-ready data, its schema, and reading one back.

Example:
    >>> from hf_eco2ai.outputs.report_json import SCHEMA, load_schema
    >>> load_schema()["properties"]["schema"]["const"] == SCHEMA
    True
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hf_eco2ai.energy_ledger import J_PER_KWH
from hf_eco2ai.energy_windows import scope_facts
from hf_eco2ai.outputs._files import write_atomically
from hf_eco2ai.record import RunRecord, Segment
from hf_eco2ai.version import __version__

SCHEMA = "hf-eco2ai/run-report"
SCHEMA_VERSION = "2.0"
JSON_NAME = "report.json"


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, tz=timezone.utc).isoformat()


def _ratio(num: float, den: float, scale: float = 1.0) -> float | None:
    return num / den * scale if den else None


def build_report(record: RunRecord) -> dict[str, Any]:
    """The report as JSON-ready data (see ``report.schema.json``)."""
    w = record.window
    attrs = record.attributes
    by_type = {
        t: {"energy_j": e, "emissions_g": w.emissions_by_type.get(t, 0.0)}
        for t, e in w.energy_by_type.items()
    }
    params = attrs.get("hf_eco2ai.model.parameters")
    model_class = attrs.get("hf_eco2ai.model.class")
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "run": {
            "id": record.run_id,
            "framework": record.framework,
            "span": record.span,
            "status": record.status,
            "error_type": record.error_type,
            "start": _iso(record.start_unix),
            "end": _iso(record.end_unix),
            "duration_s": max(0.0, (record.end_ns - record.start_ns) / 1e9),
            "model_class": model_class if isinstance(model_class, str) else None,
            "parameters": params if isinstance(params, int) else None,
            "host": record.host,
            "rank": record.rank,
            "local_rank": record.local_rank,
            "world_size": record.world_size,
            "project_name": record.project_name,
            "experiment_description": record.experiment_description,
            "hf_eco2ai_version": __version__,
        },
        "totals": {
            "energy_j": w.energy_j,
            "energy_low_j": w.energy_low_j,
            "energy_high_j": w.energy_high_j,
            "energy_kwh": w.energy_j / J_PER_KWH,
            "emissions_g": w.emissions_g,
            "emissions_low_g": w.emissions_g * (w.energy_low_j / w.energy_j) if w.energy_j else 0.0,
            "emissions_high_g": w.emissions_g * (w.energy_high_j / w.energy_j)
            if w.energy_j
            else 0.0,
            "by_type": by_type,
            "extrapolated": w.extrapolated,
            "scope": "job",
            "band_coverage": w.band_coverage,
            "gap_s": w.gap_s,
        },
        "scopes": scope_facts(w),
        "devices": [
            {
                "hw_id": d.info.hw_id,
                "hw_type": d.info.hw_type.value,
                "name": d.info.name,
                "vendor": d.info.vendor,
                "method": d.info.method.value,
                "measured": d.info.measured,
                "uncertainty": d.info.uncertainty,
                "band": [d.info.band_low, d.info.band_high],
                "band_coverage": d.info.band_coverage,
                "energy_j": d.energy_j,
                "status": d.status,
                "errors": d.errors,
                "note": d.info.note,
            }
            for d in record.devices
        ],
        "methods": list(w.methods),
        "measured": bool(record.devices) and all(d.info.measured for d in record.devices),
        "carbon": {
            "zone": w.zone,
            "source": w.source,
            "mean_intensity_g_per_kwh": w.mean_intensity,
            "pue": record.pue,
        },
        "efficiency": {
            "samples": record.samples,
            "tokens": record.tokens,
            "j_per_sample": _ratio(w.energy_j, record.samples),
            "j_per_token": _ratio(w.energy_j, record.tokens),
            "g_per_1k_samples": _ratio(w.emissions_g, record.samples, 1000.0),
            "g_per_1k_tokens": _ratio(w.emissions_g, record.tokens, 1000.0),
        },
        "epochs": [_segment(s, record) for s in record.segments if s.kind == "epoch"],
        "evaluations": [_segment(s, record) for s in record.segments if s.kind == "evaluation"],
        "projection": None
        if record.projection is None
        else {
            "progress": record.projection.progress,
            "projected_energy_j": record.projection.energy_j,
            "projected_emissions_g": record.projection.emissions_g,
        },
        "budget": {
            "co2_budget_g": record.budget.get("co2_budget_g"),
            "energy_budget_j": record.budget.get("energy_budget_j"),
            "action": record.budget.get("action", "warn"),
            "projected_over": bool(record.budget.get("projected_over", False)),
            "exceeded": bool(record.budget.get("exceeded", False)),
            "stopped": bool(record.budget.get("stopped", False)),
        },
        "timeline": _timeline(record),
        "notes": list(record.notes),
    }


def _segment(seg: Segment, record: RunRecord) -> dict[str, Any]:
    return {
        "index": seg.index,
        "start_s": (seg.start_ns - record.start_ns) / 1e9,
        "end_s": (seg.end_ns - record.start_ns) / 1e9,
        "duration_s": seg.window.duration_s,
        "energy_j": seg.window.energy_j,
        "emissions_g": seg.window.emissions_g,
        "extrapolated": seg.window.extrapolated,
        "gap_s": seg.window.gap_s,
    }


def _timeline(record: RunRecord) -> dict[str, Any]:
    hist = record.history
    empty: dict[str, Any] = {
        "t_s": [],
        "devices": [],
        "power_w": [],
        "energy_j": [],
        "intensity": [],
    }
    if hist is None or hist.t_ns.size == 0:
        return empty
    keep = (hist.t_ns >= record.start_ns) & (hist.t_ns <= record.end_ns)
    t = hist.t_ns[keep]
    base = float(hist.energy_j[keep][0]) if t.size else 0.0
    return {
        "t_s": [round((x - record.start_ns) / 1e9, 4) for x in t.tolist()],
        "devices": [d.hw_id for d in hist.devices],
        "power_w": [[round(v, 4) for v in row] for row in hist.power_w[keep].T.tolist()],
        "energy_j": [round(v - base, 6) for v in hist.energy_j[keep].tolist()],
        "intensity": [round(v, 4) for v in hist.intensity[keep].tolist()],
    }


def load_schema() -> dict[str, Any]:
    """The JSON Schema of report.json."""
    path = Path(__file__).resolve().parents[1] / "data" / "report.schema.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def write_json(report: dict[str, Any], directory: Path) -> Path:
    """Write ``report`` as ``directory/report.json`` (see :func:`write_atomically`)."""
    json_path = directory / JSON_NAME
    write_atomically(json_path, json.dumps(report, indent=2).encode("utf-8"))
    return json_path
