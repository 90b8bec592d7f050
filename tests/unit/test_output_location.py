"""Where reports go (``resolve_output_dir``) and the start-time checks of an output directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hf_eco2ai import output_location as loc
from hf_eco2ai.output_location import resolve_output_dir


def test_explicit_setting_wins_over_the_framework_location(tmp_path: Path) -> None:
    assert resolve_output_dir(str(tmp_path / "mine"), tmp_path / "ckpt") == tmp_path / "mine"


def test_framework_location_gets_its_own_subdirectory(tmp_path: Path) -> None:
    assert resolve_output_dir(None, tmp_path / "ckpt") == tmp_path / "ckpt" / "hf-eco2ai"
    assert resolve_output_dir(None, str(tmp_path / "ckpt")) == tmp_path / "ckpt" / "hf-eco2ai"


def test_without_either_the_working_directory_is_the_last_resort(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_output_dir(None, None) == tmp_path / "hf-eco2ai-runs"
    assert resolve_output_dir(None, "") == tmp_path / "hf-eco2ai-runs"  # Trainer's "" = unset


def test_result_is_absolute_and_fixed_once_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Would catch a relative result: after an os.chdir mid-run, report.json and power.png
    would land in different directories."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    framework = resolve_output_dir(None, "trainer_out")
    explicit = resolve_output_dir("reports", "trainer_out")
    home = resolve_output_dir("~/runs", None)
    monkeypatch.chdir("/")
    assert framework == tmp_path / "trainer_out" / "hf-eco2ai"
    assert explicit == tmp_path / "reports"
    assert home == tmp_path / "home" / "runs"
    assert all(p.is_absolute() for p in (framework, explicit, home))
    assert list(tmp_path.iterdir()) == []  # resolving creates nothing


def test_unknown_user_in_tilde_is_an_error() -> None:
    with pytest.raises(ValueError, match="known user"):
        loc.absolute_path("~no-such-user-hf-eco2ai/runs")


def test_limits_fall_back_when_the_file_system_does_not_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_pathconf(path: str, name: str) -> int:
        raise OSError("not supported")

    monkeypatch.setattr(os, "pathconf", no_pathconf)
    assert loc.length_problem("/x/" + "a" * 255) is None
    assert "255 bytes" in (loc.length_problem("/x/" + "a" * 256) or "")
    assert "PATH_MAX 4096" in (loc.length_problem("/" + "a/" * 2000) or "")


def test_probe_leaves_nothing_behind(tmp_path: Path) -> None:
    assert loc.writability_problem(str(tmp_path / "a" / "b" / "c")) is None
    assert loc.writability_problem(str(tmp_path)) is None
    assert list(tmp_path.iterdir()) == []


def test_broken_symlink_on_the_way_is_named(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    problem = loc.writability_problem(str(tmp_path / "link" / "runs")) or ""
    assert "points nowhere" in problem and "link" in problem


def test_probe_does_not_draw_from_the_global_random_generator(tmp_path: Path) -> None:
    """The user's random stream is theirs (the Trainer seeds it): the probe's unique name must
    come from elsewhere."""
    import random

    random.seed(1234)
    expected = random.random()
    random.seed(1234)
    assert loc.writability_problem(str(tmp_path / "runs")) is None
    assert random.random() == expected
