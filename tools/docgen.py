"""Generate the reference parts of the docs and the ``environment_variables`` module from the code.

From the ``CarbonConfig`` field table and the metric registry, ``python tools/docgen.py``
rewrites the blocks between ``<!-- BEGIN GENERATED: x -->`` and ``<!-- END GENERATED: x -->`` in
``docs/configuration.md`` and ``docs/metrics.md``, and the whole of
``src/hf_eco2ai/environment_variables.py``; ``--check`` exits 1 when one is stale (the test
suite runs the check). A maintainer's tool, not part of the installed package: it documents the
``hf_eco2ai`` of this checkout (``src/``), whatever is installed.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from hf_eco2ai.config import field_docs, field_specs  # noqa: E402
from hf_eco2ai.telemetry.names import markdown_table  # noqa: E402

COMMAND = "python tools/docgen.py"


def config_table() -> str:
    """Every CarbonConfig field with its env var, default, allowed values and meaning."""
    lines = [
        "| field | environment variable | default | allowed | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, env, default, allowed, help_text in field_docs():
        lines.append(f"| `{name}` | `{env}` | `{default}` | {allowed} | {help_text} |")
    return "\n".join(lines) + "\n"


ENV_MODULE_HEADER = f'''"""Environment variables read by hf-eco2ai (the ``opentelemetry_environment_variables`` entry point).

``opentelemetry-instrument`` turns each into a command-line flag: ``OTEL_PYTHON_HF_ECO2AI_PUE``
becomes ``--hf_eco2ai_pue``. Every variable maps to the :class:`~hf_eco2ai.config.CarbonConfig`
field of the same name in lower case.

Generated from the ``CarbonConfig`` field table by ``{COMMAND}``: do not edit.
"""
'''


def environment_variables_module() -> str:
    """The source of ``hf_eco2ai/environment_variables.py``: one constant per field."""
    parts = [ENV_MODULE_HEADER]
    for spec in field_specs():
        text = f"{spec.help} Allowed: {spec.kind.allowed()}; default: {spec.default!r}."
        doc = textwrap.fill(text, width=96, break_long_words=False, break_on_hyphens=False)
        parts.append(f'\n{spec.env_var} = "{spec.env_var}"\n"""{doc}"""\n')
    return "".join(parts)


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
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="the docs directory")
    parser.add_argument(
        "--env-module",
        default=str(ROOT / "src" / "hf_eco2ai" / "environment_variables.py"),
        help="the environment_variables module to write",
    )
    parser.add_argument("--check", action="store_true", help="fail if a file is stale")
    ns = parser.parse_args(argv)
    outputs: list[tuple[Path, str]] = []
    for page, (key, make) in BLOCKS.items():
        path = Path(ns.docs) / page
        outputs.append((path, render(path.read_text(encoding="utf-8"), key, make())))
    outputs.append((Path(ns.env_module), environment_variables_module()))
    stale = []
    for path, new in outputs:
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if new != old:
            stale.append(str(path))
            if not ns.check:
                path.write_text(new, encoding="utf-8")
    if ns.check and stale:
        print(f"stale generated files: {', '.join(stale)} (run {COMMAND})")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
