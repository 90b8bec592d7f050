"""Which AMD GPUs this process owns, and which dies share one card (for the amdsmi sensor).

Ownership follows the ROCm runtime: ``ROCR_VISIBLE_DEVICES`` filters every GPU agent (indices or
``GPU-…`` UUIDs), then ``HIP_VISIBLE_DEVICES`` — or, when it is unset, ``CUDA_VISIBLE_DEVICES``,
which HIP reads too — filters what is left, by index into that list or by UUID. An empty value
hides every GPU; as in CUDA, the list ends at the first entry that names no GPU (a note says so).
An index is turned into an amdsmi handle through the GPU's identity (UUID, ASIC serial or PCI
bus id), never by amdsmi's enumeration index: HIP numbers GPU agents in KFD topology order
(``amdsmi_get_gpu_kfd_info``'s ``node_id``), else PCI bus order is assumed. When ``torch`` is
already imported, is a ROCm build and has initialised its devices, their PCI bus ids settle the
order instead.

Cards with two dies (MI250/MI250X: two GCDs, each its own device with its own UUID and bus id)
report power only on one die, which then reports the whole card; the other reads ``"N/A"`` (or
0 W). :func:`card_groups` puts each silent die with the die that reports for it — the one with
the same board serial, else the same ASIC serial, else the same PCI bus/device with another
function (partitions), else the device just before it in HIP order with the same name (how
MI250 GCDs are enumerated) — so the sensor can split the card's energy between them.

Example:
    >>> _norm("GPU-4B9E7F8A12345678"), _norm("0x4B9E7F8A12345678")
    ('4b9e7f8a12345678', '4b9e7f8a12345678')
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["AmdDevice", "Target", "card_groups", "enumerate_devices", "select", "visible"]

POWER_KEYS = ("current_socket_power", "socket_power", "average_socket_power")
"""Power fields in order of preference: instant power first, the 1 s average last."""


UNSET_U16 = 0xFFFF
"""What amdsmi before 6.1 (activity) / 6.2 (power) returned, unconverted, for "N/A"."""


def number(value: object, below: float = math.inf) -> float | None:
    """An amdsmi number, or None for ``"N/A"``, a value ``>= below`` (an unconverted "not
    supported" sentinel such as 0xFFFF W) and anything else that is not a finite number.

    >>> number(250), number("N/A"), number(0xFFFF, below=UNSET_U16), number(101, below=101)
    (250.0, None, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) and value < below else None


def watts(value: object) -> float | None:
    """A power field in W, or None ("N/A", or 0xFFFF from amdsmi before 6.2)."""
    return number(value, below=UNSET_U16)


def text(value: object) -> str | None:
    """An amdsmi string, or None for ``"N/A"`` and empty values."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value.strip() or value.strip().upper() == "N/A":
        return None
    return value.strip()


def _norm(ident: str) -> str:
    """An identity's hex digits, lower case, without ``GPU-``/``0x`` prefixes or dashes."""
    low = ident.strip().lower()
    for prefix in ("gpu-", "0x"):
        low = low.removeprefix(prefix)
    return re.sub(r"[^0-9a-f]", "", low)


@dataclass
class AmdDevice:
    """One GPU (one die / GCD / partition) as amdsmi enumerates it."""

    index: int
    handle: Any
    uuid: str
    bdf: str = ""
    name: str = "AMD GPU"
    gfx: str | None = None
    asic_serial: str | None = None
    board_serial: str | None = None
    kfd_node: int | None = None
    hip_uuid: str | None = None
    reports_power: bool = True

    def identities(self) -> list[str]:
        """Normalised identities a visibility entry or selector may name."""
        found = [self.uuid, self.hip_uuid, self.asic_serial]
        return [n for n in (_norm(f) for f in found if f) if n]


@dataclass
class Target:
    """A device chosen for measurement, with its HIP index in this process when visible."""

    dev: AmdDevice
    hip_index: int | None = None


def _optional(smi: Any, fn: str, handle: Any) -> dict[str, Any]:
    """A dict-returning amdsmi call that older releases lack or a device may refuse: {}."""
    func = getattr(smi, fn, None)
    if func is None:
        return {}
    try:
        out = func(handle)
    except smi.AmdSmiException:
        return {}
    return out if isinstance(out, dict) else {}


def enumerate_devices(smi: Any, notes: list[str]) -> list[AmdDevice]:
    """Every AMD GPU amdsmi sees, in HIP order (KFD node, else PCI bus id)."""
    out: list[AmdDevice] = []
    for i, handle in enumerate(smi.amdsmi_get_processor_handles()):
        try:
            uuid = text(smi.amdsmi_get_gpu_device_uuid(handle))
        except smi.AmdSmiException as exc:
            notes.append(f"amdsmi device {i} skipped: {exc}".replace("\n", " "))
            continue
        if uuid is None:
            notes.append(f"amdsmi device {i} skipped: no UUID")
            continue
        try:
            bdf = text(smi.amdsmi_get_gpu_device_bdf(handle)) or ""
        except smi.AmdSmiException:
            bdf = ""
        asic = _optional(smi, "amdsmi_get_gpu_asic_info", handle)
        board = _optional(smi, "amdsmi_get_gpu_board_info", handle)
        kfd = _optional(smi, "amdsmi_get_gpu_kfd_info", handle)
        enum = _optional(smi, "amdsmi_get_gpu_enumeration_info", handle)
        power = _optional(smi, "amdsmi_get_power_info", handle)
        node = number(kfd.get("node_id"))
        out.append(
            AmdDevice(
                index=i,
                handle=handle,
                uuid=uuid,
                bdf=bdf.lower(),
                name=text(asic.get("market_name")) or text(board.get("product_name")) or "AMD GPU",
                gfx=text(asic.get("target_graphics_version")),
                asic_serial=text(asic.get("asic_serial")),
                board_serial=text(board.get("product_serial")),
                kfd_node=None if node is None else int(node),
                hip_uuid=text(enum.get("hip_uuid")),
                reports_power=any((watts(power.get(k)) or 0.0) > 0.0 for k in POWER_KEYS),
            )
        )
    if out and all(d.kfd_node is not None for d in out):
        out.sort(key=lambda d: (d.kfd_node, d.bdf))
    else:
        out.sort(key=lambda d: (d.bdf, d.index))
    return out


_ID = re.compile(r"(?i)(gpu-|0x)?[0-9a-f][0-9a-f-]*")


def _by_id(devices: Sequence[AmdDevice], ident: str) -> AmdDevice | None:
    """The device an identity names (exact, or a unique prefix as CUDA/HIP accept), else None."""
    if not _ID.fullmatch(ident.strip()):
        return None  # e.g. "-1" or "NoDevFiles", which hide GPUs, are not prefixes of ids
    want = _norm(ident)
    if len(want) < 4:
        return None
    exact = [d for d in devices if want in d.identities()]
    if exact:
        return exact[0]
    hits = [d for d in devices if any(n.startswith(want) for n in d.identities())]
    return hits[0] if len(hits) == 1 else None


def _apply(pool: list[AmdDevice], raw: str, name: str, notes: list[str]) -> list[AmdDevice]:
    if not raw.strip():
        return []
    out: list[AmdDevice] = []
    for entry in raw.split(","):
        text_ = entry.strip()
        dev = pool[int(text_)] if text_.isdigit() and int(text_) < len(pool) else None
        if dev is None and not text_.isdigit():
            dev = _by_id(pool, text_)
        if dev is None:
            notes.append(
                f"{name} entry {text_!r} names no AMD GPU: it and every entry after it ignored"
            )
            break
        out.append(dev)
    return out


def _torch_bdfs() -> list[tuple[str, str]] | None:
    """(PCI bus id without function, UUID) per HIP device, if a ROCm torch has initialised."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if not getattr(torch.version, "hip", None) or not torch.cuda.is_initialized():
            return None
        out = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            bdf = f"{p.pci_domain_id:04x}:{p.pci_bus_id:02x}:{p.pci_device_id:02x}"
            out.append((bdf, str(getattr(p, "uuid", ""))))
        return out
    except Exception:
        return None


def visible(
    devices: Sequence[AmdDevice], env: Mapping[str, str], notes: list[str]
) -> tuple[list[Target], str]:
    """The GPUs this process sees, in HIP index order, and how that was decided."""
    from_torch = _torch_bdfs()
    if from_torch:
        found: list[AmdDevice] = []
        for bdf, uuid in from_torch:
            dev = next((d for d in devices if d.bdf.rsplit(".", 1)[0] == bdf), None)
            dev = dev or (_by_id(devices, uuid) if uuid else None)
            if dev is None:
                break
            found.append(dev)
        if len(found) == len(from_torch):
            return [Target(d, i) for i, d in enumerate(found)], "torch (ROCm) device PCI bus ids"
        notes.append("torch device bus ids not all known to amdsmi: using the environment")
    pool = list(devices)
    how: list[str] = []
    rocr = env.get("ROCR_VISIBLE_DEVICES")
    if rocr is not None:
        pool = _apply(pool, rocr, "ROCR_VISIBLE_DEVICES", notes)
        how.append(f"ROCR_VISIBLE_DEVICES={rocr}")
    for name in ("HIP_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"):
        raw = env.get(name)
        if raw is not None:
            pool = _apply(pool, raw, name, notes)
            how.append(f"{name}={raw}")
            break
    if not how:
        how.append("all AMD GPUs (no ROCR/HIP/CUDA_VISIBLE_DEVICES)")
    return [Target(d, i) for i, d in enumerate(pool)], "; ".join(how)


def select(
    devices: Sequence[AmdDevice],
    seen: Sequence[Target],
    selectors: Sequence[str],
    notes: list[str],
) -> list[Target]:
    """``gpu_devices`` entries: HIP indices into ``seen``, or identities of any device."""
    out: list[Target] = []
    for sel in selectors:
        text_ = str(sel).strip()
        if text_.isdigit():
            if int(text_) < len(seen):
                out.append(seen[int(text_)])
            else:
                notes.append(f"gpu_devices entry {text_}: only {len(seen)} AMD GPU(s) visible")
            continue
        dev = _by_id(devices, text_)
        if dev is None:
            notes.append(f"gpu_devices entry {text_!r} names no AMD GPU")
            continue
        out.append(next((t for t in seen if t.dev is dev), Target(dev)))
    return out


def dedupe(targets: Sequence[Target]) -> list[Target]:
    """One entry per device."""
    seen: dict[str, Target] = {}
    for t in targets:
        seen.setdefault(t.dev.uuid, t)
    return list(seen.values())


def _slot(d: AmdDevice) -> str | None:
    return d.bdf.rsplit(".", 1)[0] if "." in d.bdf else None


def card_groups(devices: Sequence[AmdDevice]) -> tuple[dict[str, list[AmdDevice]], list[str]]:
    """Per device UUID, the dies that share its card's readings ``[reporting die, *silent]``.

    A die that reports power stands alone unless silent dies join it. A silent die with no
    reporting die found is absent from the result (and named in the notes): it cannot be
    measured and is never given a silent zero.
    """
    reporting = [d for d in devices if d.reports_power]
    groups: dict[str, list[AmdDevice]] = {d.uuid: [d] for d in reporting}
    notes: list[str] = []
    keys: list[tuple[str, Callable[[AmdDevice], str | None]]] = [
        ("board serial", lambda d: d.board_serial),
        ("ASIC serial", lambda d: d.asic_serial),
        ("PCI slot", _slot),
    ]
    order = list(devices)
    for silent in (d for d in devices if not d.reports_power):
        partner: AmdDevice | None = None
        for label, key in keys:
            value = key(silent)
            hits = [p for p in reporting if value is not None and key(p) == value]
            if len(hits) == 1:
                partner, how = hits[0], label
                break
        if partner is None:
            pos = order.index(silent)
            prev = order[pos - 1] if pos > 0 else None
            if (
                prev is not None
                and prev.reports_power
                and prev.name == silent.name
                and len(groups[prev.uuid]) == 1
            ):
                partner, how = prev, "enumeration order (no shared serial)"
        if partner is None:
            notes.append(
                f"AMD GPU {silent.uuid} ({silent.name}) reports no power and no die of its card"
                " was found: not measured"
            )
            continue
        groups[partner.uuid].append(silent)
        notes.append(f"AMD GPU {silent.uuid} shares the card of {partner.uuid} (by {how})")
    return {d.uuid: g for g in groups.values() for d in g}, notes
