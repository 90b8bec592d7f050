"""Generate the reference parts of the docs from the code (config fields, metric registry).

``python -m hf_eco2ai.docgen`` rewrites the blocks between ``<!-- BEGIN GENERATED: x -->`` and
``<!-- END GENERATED: x -->`` in ``docs/configuration.md`` and ``docs/metrics.md``;
``--check`` exits 1 when they are stale (the test suite runs the check).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from hf_eco2ai.config import field_docs
from hf_eco2ai.telemetry.names import markdown_table


def config_table() -> str:
    """Every CarbonConfig field with its env var, default, allowed values and meaning."""
    lines = [
        "| field | environment variable | default | allowed | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, env, default, allowed, help_text in field_docs():
        lines.append(f"| `{name}` | `{env}` | `{default}` | {allowed} | {help_text} |")
    return "\n".join(lines) + "\n"


BLOCKS = {"configuration.md": ("config", config_table), "metrics.md": ("metrics", markdown_table)}


def render(text: str, key: str, body: str) -> str:
    """``text`` with the generated block ``key`` replaced by ``body``."""
    pattern = re.compile(
        rf"(<!-- BEGIN GENERATED: {key} -->\n).*?(<!-- END GENERATED: {key} -->)", re.DOTALL
    )
    if not pattern.search(text):
        raise ValueError(f"no generated block '{key}' in the page")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", default="docs", help="the docs directory")
    parser.add_argument("--check", action="store_true", help="fail if a page is stale")
    ns = parser.parse_args(argv)
    stale = []
    for page, (key, make) in BLOCKS.items():
        path = Path(ns.docs) / page
        text = path.read_text(encoding="utf-8")
        new = render(text, key, make())
        if new != text:
            stale.append(page)
            if not ns.check:
                path.write_text(new, encoding="utf-8")
    if ns.check and stale:
        print("stale generated docs: " + ", ".join(stale) + " (run python -m hf_eco2ai.docgen)")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
