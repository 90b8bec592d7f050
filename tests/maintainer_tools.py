"""Load the maintainer scripts under ``tools/`` (not part of the installed package) in tests.

Example:
    >>> load_tool("docgen").COMMAND
    'python tools/docgen.py'
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load_tool(name: str) -> ModuleType:
    """The module ``tools/<name>.py``, imported once as ``hf_eco2ai_tools.<name>``."""
    module_name = f"hf_eco2ai_tools.{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None, name
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
