from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _run_in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run reports (default output_dir 'hf-eco2ai-runs', relative) land in a temp dir."""
    monkeypatch.chdir(tmp_path)
