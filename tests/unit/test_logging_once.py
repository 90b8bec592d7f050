from __future__ import annotations

import logging

import pytest

from hf_eco2ai._logging import reset_once, warn_once


def test_warns_once_per_key(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("hf_eco2ai.test")
    with caplog.at_level(logging.DEBUG, logger="hf_eco2ai.test"):
        warn_once(log, "k", "hello %s", "a")
        warn_once(log, "k", "hello %s", "b")
        warn_once(log, "other", "other")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["hello a", "other"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG] == ["hello b"]
    reset_once()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_eco2ai.test"):
        warn_once(log, "k", "again")
    assert [r.getMessage() for r in caplog.records] == ["again"]
