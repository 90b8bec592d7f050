"""tools/derive_bands.py reproduces the bands the code uses and the docs quote, exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hf_eco2ai.sensors.bands import RAM_MODEL_BAND, TDP_DEFAULT_BAND, TDP_TABLE_BAND

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "derive_bands.py"


@pytest.fixture(scope="module")
def printed() -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run(
        [sys.executable, str(TOOL)], check=True, capture_output=True, text=True, env=env
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 5
    return lines


@pytest.fixture(scope="module")
def tool() -> object:
    sys.path.insert(0, str(TOOL.parent))
    try:
        import derive_bands
    finally:
        sys.path.remove(str(TOOL.parent))
    return derive_bands


def test_docs_quote_the_tool_output_verbatim(printed: list[str]) -> None:
    docs = (ROOT / "docs" / "how-it-measures.md").read_text(encoding="utf-8")
    for line in printed:
        assert line in docs, f"docs/how-it-measures.md does not quote: {line}"
    assert "python tools/derive_bands.py" in docs


def test_code_constants_are_the_derived_bands(tool: object) -> None:
    derived = tool.derive()  # type: ignore[attr-defined]
    expected = (TDP_TABLE_BAND, TDP_DEFAULT_BAND, RAM_MODEL_BAND)
    for band, const in zip(derived, expected, strict=True):
        assert (band.low, band.high, band.coverage) == (const.low, const.high, const.coverage)


def test_band_reaches_its_target_coverage(tool: object) -> None:
    rng = np.random.default_rng(0)  # a private generator: the global one is left alone
    ratios = rng.lognormal(0.0, 0.5, 10_000)
    band = tool.band("x", ratios)  # type: ignore[attr-defined]
    assert band.low < 1.0 < band.high
    assert band.coverage >= 0.9
    inside = np.mean((ratios >= band.low) & (ratios <= band.high))
    assert inside == pytest.approx(band.coverage, abs=0.01)
    tiny = tool.band("y", np.array([0.5, 1.0, 2.0]))  # type: ignore[attr-defined]
    assert (tiny.low, tiny.high, tiny.coverage) == (0.5, 2.0, 1.0)  # small: all of it


def test_per_core_spread_matches_the_issue_audit(printed: list[str]) -> None:
    # issue 14: "1,072 parts, 6.73-13.33 W" (the earlier docs said 1,128 parts, 5.5-13.8 W)
    assert printed[0] == (
        "server parts: 1,072, TDP per core median 8.75 W, inter-quartile 6.73-13.33 W"
    )
