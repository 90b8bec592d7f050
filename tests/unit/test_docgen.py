from __future__ import annotations

from pathlib import Path

import pytest

from hf_eco2ai import docgen
from hf_eco2ai.config import field_names
from hf_eco2ai.telemetry.names import METRICS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_generated_docs_are_up_to_date() -> None:
    assert docgen.main(["--docs", str(DOCS), "--check"]) == 0


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
    assert docgen.main(["--docs", str(tmp_path), "--check"]) == 1
    assert docgen.main(["--docs", str(tmp_path)]) == 0
    assert docgen.main(["--docs", str(tmp_path), "--check"]) == 0
    assert "OTEL_PYTHON_HF_ECO2AI_PUE" in (tmp_path / "configuration.md").read_text()


def test_missing_block_is_an_error() -> None:
    with pytest.raises(ValueError, match="no generated block"):
        docgen.render("nothing here", "config", "x")
