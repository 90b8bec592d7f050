#!/usr/bin/env python3
"""Record the part of AMD's ``amdsmi`` Python API that hf-eco2ai uses, from the package source.

``amdsmi`` cannot be imported without ROCm's ``libamd_smi.so`` (the import itself fails with a
``KeyError``), so its contract is read from the source (``ast``), never by importing it: for each
function the sensor calls, its parameter names and the string keys of the dicts it returns;
and the ``AMDSMI_STATUS_*`` codes of ``amdsmi_wrapper.py``. The fake in
``tests/fakes/fake_amdsmi.py`` is checked against this record (``tests/unit/test_sensor_amdsmi.py``).

Usage (each argument a wheel or an unpacked ``amdsmi`` package folder)::

    pip download --no-deps -d /tmp/amdsmi-wheels amdsmi==5.7.0 amdsmi==6.1.0 ... amdsmi==7.0.2
    python tools/amdsmi_contract.py /tmp/amdsmi-wheels/*.whl > tests/fakes/amdsmi_contract.json
"""

from __future__ import annotations

import ast
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

USED = (
    "amdsmi_init",
    "amdsmi_shut_down",
    "amdsmi_get_processor_handles",
    "amdsmi_get_gpu_device_uuid",
    "amdsmi_get_gpu_device_bdf",
    "amdsmi_get_gpu_asic_info",
    "amdsmi_get_gpu_board_info",
    "amdsmi_get_gpu_kfd_info",
    "amdsmi_get_gpu_enumeration_info",
    "amdsmi_get_energy_count",
    "amdsmi_get_power_info",
    "amdsmi_get_gpu_activity",
    "amdsmi_get_gpu_vram_usage",
)
"""The functions hf-eco2ai's AMD sensor calls (absent ones are recorded as absent)."""


def extract(interface_src: str, wrapper_src: str) -> dict[str, Any]:
    """The contract of one release, from ``amdsmi_interface.py`` and ``amdsmi_wrapper.py``."""
    tree = ast.parse(interface_src)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    out: dict[str, Any] = {}
    for name in USED:
        node = functions.get(name)
        if node is None:
            out[name] = None
            continue
        keys = sorted(
            {
                k.value
                for d in ast.walk(node)
                if isinstance(d, ast.Dict)
                for k in d.keys
                if isinstance(k, ast.Constant) and isinstance(k.value, str)
            }
        )
        out[name] = {"params": [a.arg for a in node.args.args], "keys": keys}
    codes = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(AMDSMI_STATUS_[A-Z_]+) = (\d+)$", wrapper_src, re.MULTILINE)
    }
    return {"functions": out, "status_codes": codes}


def _read(source: Path) -> tuple[str, str, str]:
    """(version, interface source, wrapper source) of a wheel or an ``amdsmi`` folder."""
    if source.suffix == ".whl":
        version = source.name.split("-")[1]
        with zipfile.ZipFile(source) as zf:
            return (
                version,
                zf.read("amdsmi/amdsmi_interface.py").decode(),
                zf.read("amdsmi/amdsmi_wrapper.py").decode(),
            )
    version = "installed"
    return (
        version,
        (source / "amdsmi_interface.py").read_text(),
        (source / "amdsmi_wrapper.py").read_text(),
    )


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    record: dict[str, Any] = {}
    for arg in argv:
        version, interface, wrapper = _read(Path(arg))
        record[version] = extract(interface, wrapper)
    json.dump(record, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
