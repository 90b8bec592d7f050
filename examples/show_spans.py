"""Print the hf-eco2ai spans found in console-exporter output as a table.

Usage: ``python examples/show_spans.py demo-output/console.txt``
"""

from __future__ import annotations

import json
import sys
from typing import Any


def spans_in(text: str) -> list[dict[str, Any]]:
    """Every JSON span object the OpenTelemetry console exporter printed into ``text``."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    pos = text.find('{\n    "name"')
    while pos != -1:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            end = pos + 1
        else:
            if isinstance(obj, dict) and "attributes" in obj:
                found.append(obj)
        pos = text.find('{\n    "name"', end)
    return found


def main(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        spans = spans_in(handle.read())
    rows = [s for s in spans if "hf_eco2ai.energy.joules" in s.get("attributes", {})]
    if not rows:
        print("no hf-eco2ai spans found")
        return 1
    print(f"{'span':34} {'seconds':>8} {'energy J':>10} {'±band J':>16} {'gCO2e':>10}  method")
    for span in rows:
        a = span["attributes"]
        band = f"{a['hf_eco2ai.energy.joules.low']:.1f}..{a['hf_eco2ai.energy.joules.high']:.1f}"
        print(
            f"{span['name']:34} {a['hf_eco2ai.duration.seconds']:8.2f} "
            f"{a['hf_eco2ai.energy.joules']:10.2f} {band:>16} "
            f"{a['hf_eco2ai.emissions.grams']:10.5f}  {a['hf_eco2ai.energy.method']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "demo-output/console.txt"))
