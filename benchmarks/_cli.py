"""What every benchmark script's command line shares: ``--json FILE`` and writing the result."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser showing the script's docstring, with ``--json FILE``."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser


def emit(result: dict[str, Any], json_path: Path | None, print_table: Callable[..., None]) -> int:
    """Write ``result`` to ``json_path`` (when given), print its table; the exit status."""
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_table(result)
    return 0
