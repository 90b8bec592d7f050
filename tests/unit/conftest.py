from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _run_in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run reports under the fallback location (`./hf-eco2ai-runs` when output_dir is unset and
    the framework names no directory) land in a temp dir."""
    monkeypatch.chdir(tmp_path)
