from __future__ import annotations

from pathlib import Path

import pytest

from hf_eco2ai.config import field_names
from hf_eco2ai.telemetry.names import METRICS
from tests.maintainer_tools import load_tool

docgen = load_tool("docgen")

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_generated_docs_and_env_module_are_up_to_date() -> None:
    """docs/configuration.md, docs/metrics.md and src/hf_eco2ai/environment_variables.py are
    what ``python tools/docgen.py`` writes from the field table and the metric registry."""
    assert docgen.main(["--check"]) == 0
    assert docgen.main(["--docs", str(DOCS), "--check"]) == 0


def test_maintainer_tools_are_not_in_the_installed_package() -> None:
    import hf_eco2ai

    package = Path(hf_eco2ai.__file__).parent
    assert not (package / "docgen.py").exists()
    assert not (package / "carbon" / "refresh_tables.py").exists()


def test_tables_list_every_field_and_metric() -> None:
    table = docgen.config_table()
    for name in field_names():
        assert f"`{name}`" in table
    metrics = (DOCS / "metrics.md").read_text()
    for spec in METRICS:
        assert f"`{spec.name}`" in metrics
        assert f"`{spec.prometheus}`" in metrics


def test_check_detects_and_fix_rewrites_stale_pages(tmp_path: Path) -> None:
    for page in ("configuration.md", "metrics.md"):
        (tmp_path / page).write_text(
            f"x\n<!-- BEGIN GENERATED: {docgen.BLOCKS[page][0]} -->\nold\n"
            f"<!-- END GENERATED: {docgen.BLOCKS[page][0]} -->\n"
        )
    env_module = tmp_path / "environment_variables.py"
    args = ["--docs", str(tmp_path), "--env-module", str(env_module)]
    assert docgen.main([*args, "--check"]) == 1
    assert not env_module.exists()  # --check writes nothing
    assert docgen.main(args) == 0
    assert docgen.main([*args, "--check"]) == 0
    assert "OTEL_PYTHON_HF_ECO2AI_PUE" in (tmp_path / "configuration.md").read_text()
    namespace: dict[str, object] = {}
    exec(env_module.read_text(), namespace)  # the generated module is valid Python
    assert namespace["OTEL_PYTHON_HF_ECO2AI_PUE"] == "OTEL_PYTHON_HF_ECO2AI_PUE"
    env_module.write_text(env_module.read_text() + "X = 1\n")  # a hand edit is stale
    assert docgen.main([*args, "--check"]) == 1


def test_missing_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="no generated block"):
        docgen.render("nothing here", "config", "x")
