"""The span-attribute registry: every key the code writes is registered, the docs list them all.

Keys are read from the source with ``ast`` (string constants and f-string prefixes in the
modules that set span attributes), so a key spelled in a new place without a registry entry
fails here; so does a registry entry no code writes.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from hf_eco2ai.distributed.job import JobTotals
from hf_eco2ai.exporters.mlflow import PARAM_ATTRIBUTES
from hf_eco2ai.telemetry import attributes
from hf_eco2ai.telemetry.attributes import ATTRIBUTES, MLFLOW_PARAMS, lookup, markdown_table

SRC = Path(attributes.__file__).resolve().parents[1]
DOCS = SRC.parents[1] / "docs"
WRITERS = [
    SRC / "telemetry" / "spans.py",
    SRC / "run" / "run.py",
    SRC / "run" / "record.py",
    SRC / "projection.py",
    SRC / "integrations" / "transformers_callback.py",
    SRC / "integrations" / "lightning_callback.py",
    SRC / "integrations" / "measure.py",
    SRC / "integrations" / "measure_result.py",
]
"""The modules that put hf_eco2ai.* attributes on spans, through the registry's constants
(distributed/job.py builds its keys from a prefix: checked through JobTotals.attributes below)."""
KEY = re.compile(r"^hf_eco2ai\.[a-z0-9_.]+$")
BLOCK = re.compile(
    r"<!-- BEGIN GENERATED: span-attributes -->\n(.*?)<!-- END GENERATED: span-attributes -->",
    re.DOTALL,
)


def _written_keys() -> set[str]:
    """String constants that look like attribute keys; f-strings as ``prefix{x}suffix``."""
    keys: set[str] = set()
    for path in WRITERS:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        skip |= {  # the literal parts of f-strings are read with their f-string
            id(part)
            for node in ast.walk(tree)
            if isinstance(node, ast.JoinedStr)
            for part in node.values
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                text = "".join(
                    v.value if isinstance(v, ast.Constant) else "{x}" for v in node.values
                )
                if text.startswith("hf_eco2ai."):
                    keys.add(text)
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in skip
                and KEY.match(node.value)
            ):
                keys.add(node.value)
    return keys


def _registry_names_used() -> set[str]:
    """Every ``A.<NAME>`` the writers use (``from hf_eco2ai.telemetry import attributes as A``)."""
    used: set[str] = set()
    for path in WRITERS:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "A"
            ):
                used.add(node.attr)
    return used


def test_writers_spell_no_key_themselves() -> None:
    """Would catch: a key written as a string literal beside the registry (two spellings of one
    attribute, as the CO2 budget once had)."""
    assert _written_keys() == set()


def test_every_key_the_code_writes_is_registered() -> None:
    used = _registry_names_used()
    assert len(used) > 20, used  # the scan found the spans' keys
    keys = {getattr(attributes, n) for n in used if n.isupper()}
    missing = sorted(k for k in keys if lookup(k) is None)
    assert missing == [], f"register these in hf_eco2ai/telemetry/attributes.py: {missing}"
    for name in used - {n for n in used if n.isupper()}:
        assert callable(getattr(attributes, name)), name  # energy_by_type(), eval_metric()...


def test_every_job_attribute_is_registered() -> None:
    totals = JobTotals(
        world_size=3,
        ranks=(0, 1),
        hosts=1,
        energy_j=10.0,
        emissions_g=1.0,
        energy_by_type={"gpu": 8.0, "cpu": 2.0},
        emissions_by_type={"gpu": 0.8, "cpu": 0.2},
        samples=4,
        tokens=64,
    )
    keys = totals.attributes()
    assert "hf_eco2ai.job.missing_ranks" in keys
    assert [k for k in keys if lookup(k) is None] == []


@pytest.mark.parametrize(
    ("key", "entry"),
    [
        ("hf_eco2ai.energy.gpu.joules", attributes.ENERGY_BY_TYPE),
        ("hf_eco2ai.emissions.memory.grams", attributes.EMISSIONS_BY_TYPE),
        ("hf_eco2ai.eval.eval_loss", attributes.EVAL_METRIC),
        ("hf_eco2ai.job.energy.cpu.joules", attributes.JOB_ENERGY_BY_TYPE),
        ("hf_eco2ai.energy.joules", attributes.ENERGY_JOULES),
        ("hf_eco2ai.energy.joules.low", attributes.ENERGY_JOULES_LOW),
    ],
)
def test_lookup_resolves_templates(key: str, entry: str) -> None:
    found = lookup(key)
    assert found is not None
    assert found.name == entry


def test_unknown_keys_are_not_registered() -> None:
    for key in ("hf_eco2ai.budget.emissions.grams", "hf_eco2ai.energy", "other.energy.joules"):
        assert lookup(key) is None, key


def test_names_are_unique_and_prefixed() -> None:
    names = [a.name for a in ATTRIBUTES]
    assert len(names) == len(set(names))
    assert all(n.startswith("hf_eco2ai.") for n in names)
    assert all(a.description.endswith((".", ")")) for a in ATTRIBUTES)


def test_the_mlflow_bridge_takes_its_params_from_the_registry() -> None:
    assert PARAM_ATTRIBUTES == MLFLOW_PARAMS
    assert attributes.BUDGET_CO2_GRAMS in PARAM_ATTRIBUTES
    assert all(lookup(p) is not None for p in PARAM_ATTRIBUTES)


def test_the_docs_table_is_generated_from_the_registry() -> None:
    page = (DOCS / "metrics.md").read_text(encoding="utf-8")
    found = BLOCK.search(page)
    assert found is not None, "docs/metrics.md has no span-attributes block"
    assert found.group(1) == markdown_table(), (
        "docs/metrics.md is stale: paste the output of "
        "`python -m hf_eco2ai.telemetry.attributes` into its span-attributes block"
    )
