"""Rebuild the carbon-intensity tables under ``hf_eco2ai/carbon/data/`` from downloaded sources.

Run it with the directory holding the source files (``src/hf_eco2ai/carbon/data/README.md`` says
where each comes from)::

    python tools/refresh_tables.py --from ~/Downloads/carbon-sources [--out DIR]

Source files (one of the first two is required unless the country table in force is to be kept
as it is; any other source that is missing keeps the rows the shipped tables already hold for it):

==============================  ==============================================================
``carbon-intensity-electricity.csv``
                                Our World in Data's grapher download of "Carbon intensity of
                                electricity generation" (``Entity, Code, Year, <value>``), every
                                year; the latest year of each country is used, and OWID's
                                ``World`` row is the world average
``global_energy_mix.json``      CodeCarbon's copy of OWID's figures (one year per country,
                                ``carbon_intensity``, ``year``, ``total_TWh``): used when the
                                previous file is absent, and for countries it lacks
``iso_3166-1.json``             Debian ``iso-codes``: the ISO 3166-1 country list
``iso_3166-2.json``             Debian ``iso-codes``: subdivision names (US-CA → California)
``CI_aggregated.csv``           Green Algorithms ``data/v3.0``: US states, Canadian provinces,
                                Australian states (gCO2e/kWh, year in the source text)
``egrid-state-<YEAR>.csv``      US EPA eGRID's state sheet (``ST<YY>``) saved as CSV, with the
                                short-code header row (``PSTATABB``, ``STC2ERTA``): US states
                                and DC, CO2e total output emission rate in lb/MWh (converted
                                to g/kWh, × 0.45359237); the newest year wins
``nga-scope2.csv``              Australia's National Greenhouse Accounts Factors, Table 1
                                (scope 2, location-based), transcribed as ``zone,
                                kg_co2e_per_kwh, edition, note`` with our zone codes (``AU-NSW``)
``google-cloud-<YEAR>.csv``     Google's ``region-carbon-info`` ``data/yearly/<YEAR>.csv``:
                                the GCP region list and Google's published (operational)
                                figure, kept in the ``published_*`` columns; the newest year wins
``carbon_index.csv``            eco2ai's carbon index: used for countries the first file lacks
``cloud_region_locations.csv``  cloud region → grid zone (defaults to the shipped copy)
==============================  ==============================================================

Sub-national sources can overlap (Green Algorithms republishes older eGRID and NGA figures):
each zone takes the newest year any supplied source, or the shipped table, has for it.

Every row carries its ``basis`` (``lifecycle``: generation plus upstream/life-cycle emissions of
each source; ``direct``: combustion at the plant only) and ``licence`` (:data:`SOURCE_META`).
One rule gives a cloud region its figure: the figure of the zone it sits in, else of its country,
so the same grid gets the same number on every cloud. The nine Swedish and Norwegian bidding
zones carry their country's figure (:data:`NORDIC_NAMES`): no zone figure on the national basis is
available.

Nothing here runs at import time; the module only reads and writes files when called.

Example:
    >>> from pathlib import Path
    >>> callable(build_tables)
    True
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Row = dict[str, str]

#: The directory the tables ship in (``src/hf_eco2ai/carbon/data`` of this checkout).
DATA_DIR = Path(__file__).resolve().parents[1] / "src" / "hf_eco2ai" / "carbon" / "data"

#: The provenance columns every intensity row carries.
PROVENANCE = ("intensity_g_per_kwh", "year", "source", "basis", "licence", "note")
COUNTRY_COLUMNS = ("alpha2", "alpha3", "name", *PROVENANCE)
ZONE_COLUMNS = ("zone", "country", "code", "name", *PROVENANCE)
#: ``published_*``: a figure the cloud provider publishes for the region (Google only), kept for
#: reference and not used by lookups (a different basis from the national figures).
PUBLISHED = ("published_g_per_kwh", "published_year", "published_source", "published_basis")
CLOUD_COLUMNS = ("provider", "region", "country", "zone", "location", *PROVENANCE, *PUBLISHED)
ISO_COLUMNS = ("alpha2", "alpha3", "numeric", "name")
LOCATION_COLUMNS = ("provider", "region", "zone", "location", "reference")

#: Short dataset names used in the ``source`` column (and in ``table:<name>@<year>``).
SRC_OWID = "owid"
SRC_ECO2AI = "eco2ai"
SRC_GREEN_ALGORITHMS = "green-algorithms"
SRC_GOOGLE = "google-cloud"
SRC_WORLD = "world-average"
SRC_EGRID = "egrid"
SRC_NGA = "nga"

#: eGRID rates are in lb/MWh; the international avoirdupois pound is exactly 0.45359237 kg.
LB_PER_MWH_TO_G_PER_KWH = 0.45359237

#: ``source`` → (``basis``, ``licence``) of its rows.
SOURCE_META: Mapping[str, tuple[str, str]] = {
    SRC_OWID: ("lifecycle", "CC-BY-4.0"),
    SRC_WORLD: ("lifecycle", "CC-BY-4.0"),  # the mean of the owid rows
    SRC_GREEN_ALGORITHMS: ("direct", "CC-BY-4.0"),
    SRC_ECO2AI: ("unstated", "Apache-2.0"),
    SRC_GOOGLE: ("direct", "Apache-2.0"),  # Google: "operational gross emissions"
    SRC_EGRID: ("direct", "public-domain"),  # US EPA: a work of the US federal government
    SRC_NGA: ("direct", "CC-BY-4.0"),  # Commonwealth of Australia (DCCEEW)
}

#: Territories without their own figure whose grid is the neighbour's (interconnection/imports).
#: Anything else without data gets the world average, flagged in ``note``.
PROXIES: Mapping[str, str] = {
    "AX": "FI",  # Åland: interconnected with the Finnish/Swedish grid
    "AD": "ES",  # Andorra: imports most of its electricity over the Spanish border
    "LI": "CH",  # Liechtenstein: Swiss grid
    "MC": "FR",  # Monaco: French grid
    "SM": "IT",  # San Marino: Italian grid
    "VA": "IT",  # Vatican: Italian grid
    "JE": "FR",  # Jersey: supplied from France by submarine cables
    "GG": "FR",  # Guernsey: supplied from France via Jersey
    "IM": "GB",  # Isle of Man: interconnector with Great Britain
}

#: Green Algorithms location codes → ISO 3166-2 style zone codes.
GA_RENAMES: Mapping[str, str] = {
    "CA-MT": "CA-MB",
    "AU-WA2": "AU-WA",
    "AU-WA1": "AU-WA-NWIS",
    "AU-NT2": "AU-NT-DKIS",
}
GA_COUNTRIES = ("US", "CA", "AU")

#: Typos in upstream region names.
CLOUD_REGION_FIXES: Mapping[str, str] = {"me-cenrtal1": "me-central1"}

#: Why a zone's figure is not on the national (lifecycle) basis, by source.
ZONE_BASIS_NOTES: Mapping[str, str] = {
    "US": "state figure on a direct basis (eGRID output emission rate); no lifecycle figure per "
    "state in the sources used",
    "CA": "provincial figure on a direct basis (Canada's National Inventory Report); no lifecycle "
    "figure per province in the sources used",
    "AU": "state figure on a direct basis (National Greenhouse Accounts scope 2 factor); no "
    "lifecycle figure per state in the sources used",
}

#: Swedish and Norwegian bidding zones: they carry their country's figure (the only sourced
#: figures, CodeCarbon's, were a uniform 18 g/kWh placeholder), kept so that ``SE3`` resolves
#: and a live provider is asked for the zone.
NORDIC_NAMES: Mapping[str, str] = {
    "SE1": "Sweden bidding zone SE1 (Luleå)",
    "SE2": "Sweden bidding zone SE2 (Sundsvall)",
    "SE3": "Sweden bidding zone SE3 (Stockholm)",
    "SE4": "Sweden bidding zone SE4 (Malmö)",
    "NO1": "Norway bidding zone NO1 (Oslo)",
    "NO2": "Norway bidding zone NO2 (Kristiansand)",
    "NO3": "Norway bidding zone NO3 (Trondheim)",
    "NO4": "Norway bidding zone NO4 (Tromsø)",
    "NO5": "Norway bidding zone NO5 (Bergen)",
}


class SourceError(ValueError):
    """A source file is missing, unreadable or not of the expected shape."""


@dataclass
class Tables:
    """The rebuilt tables, as rows of strings ready for :func:`write_tables`."""

    iso: list[Row]
    countries: list[Row]
    zones: list[Row]
    cloud: list[Row]
    locations: list[Row]


# --------------------------------------------------------------------------- small helpers
def _fmt(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def _intensity(raw: object, what: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise SourceError(f"{what}: intensity {raw!r} is not a number")
    try:
        value = float(raw)
    except ValueError:
        raise SourceError(f"{what}: intensity {raw!r} is not a number") from None
    if not math.isfinite(value) or not 0 <= value <= 2000:
        raise SourceError(f"{what}: intensity {value} outside 0..2000 gCO2e/kWh")
    return value


def _year(raw: object, what: str) -> int:
    try:
        year = int(str(raw))
    except ValueError:
        raise SourceError(f"{what}: year {raw!r} is not a year") from None
    if not 1990 <= year <= 2100:
        raise SourceError(f"{what}: year {year} out of range")
    return year


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceError(f"{path.name}: cannot read JSON ({exc})") from None


def _read_csv(path: Path, *, skip_lines: int = 0) -> list[Row]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path.name}: cannot read CSV ({exc})") from None
    lines = text.splitlines(keepends=True)[skip_lines:]
    reader = csv.DictReader(io.StringIO("".join(lines)))
    return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]


def read_table(path: Path) -> list[Row]:
    """Read one of our CSV tables (or return ``[]`` when it does not exist yet)."""
    if not path.exists():
        return []
    return _read_csv(path)


# --------------------------------------------------------------------------- sources
def _iso_rows(src: Path, current: Path) -> list[Row]:
    path = src / "iso_3166-1.json"
    if not path.exists():
        kept = read_table(current / "iso3166.csv")
        if not kept:
            raise SourceError("iso_3166-1.json missing and no shipped iso3166.csv to keep")
        return kept
    data = _read_json(path)
    entries = data.get("3166-1") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise SourceError("iso_3166-1.json: expected an object with a '3166-1' list")
    rows: list[Row] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise SourceError("iso_3166-1.json: entries must be objects")
        try:
            a2, a3, num = entry["alpha_2"], entry["alpha_3"], entry["numeric"]
            name = entry.get("common_name") or entry["name"]
        except KeyError as exc:
            raise SourceError(f"iso_3166-1.json: entry without {exc}") from None
        if not re.fullmatch(r"[A-Z]{2}", a2) or not re.fullmatch(r"[A-Z]{3}", a3):
            raise SourceError(f"iso_3166-1.json: bad codes {a2!r}/{a3!r}")
        rows.append({"alpha2": a2, "alpha3": a3, "numeric": str(num), "name": str(name)})
    return sorted(rows, key=lambda r: r["alpha2"])


def _subdivision_names(src: Path) -> dict[str, str]:
    path = src / "iso_3166-2.json"
    if not path.exists():
        return {}
    data = _read_json(path)
    entries = data.get("3166-2") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise SourceError("iso_3166-2.json: expected an object with a '3166-2' list")
    return {
        str(e["code"]): str(e["name"])
        for e in entries
        if isinstance(e, dict) and "code" in e and "name" in e
    }


GRAPHER_FILE = "carbon-intensity-electricity.csv"


def _owid_grapher(
    src: Path,
) -> tuple[dict[str, tuple[float, int, float]], tuple[float, int]] | None:
    """(alpha-3 → (intensity, latest year, 0), (world, year)) from OWID's grapher download."""
    path = src / GRAPHER_FILE
    if not path.exists():
        return None
    latest: dict[str, tuple[float, int, float]] = {}
    world: tuple[float, int] | None = None
    for row in _read_csv(path):
        code, value_col = (
            row.get("Code", ""),
            next(iter(row.keys() - {"Entity", "Code", "Year"}), ""),
        )
        if not value_col or "Year" not in row:
            raise SourceError(f"{GRAPHER_FILE}: expected columns Entity, Code, Year, <value>")
        what = f"{GRAPHER_FILE}[{row.get('Entity', '')} {row['Year']}]"
        if code == "OWID_WRL":
            value, year = _intensity(row[value_col], what), _year(row["Year"], what)
            if world is None or year > world[1]:
                world = (value, year)
            continue
        if not re.fullmatch(r"[A-Z]{3}", code):  # regions, OWID_* aggregates
            continue
        value, year = _intensity(row[value_col], what), _year(row["Year"], what)
        if code not in latest or year > latest[code][1]:
            latest[code] = (value, year, 0.0)
    if not latest or world is None:
        raise SourceError(f"{GRAPHER_FILE}: needs country rows and the World (OWID_WRL) row")
    return latest, world


def _owid(src: Path, *, required: bool = True) -> dict[str, tuple[float, int, float]]:
    """alpha-3 → (intensity, year, generation TWh) from CodeCarbon's global_energy_mix.json."""
    path = src / "global_energy_mix.json"
    if not path.exists():
        if not required:
            return {}
        raise SourceError(
            f"{path} is required (CodeCarbon's global_energy_mix.json), unless {GRAPHER_FILE} "
            "(Our World in Data) is given"
        )
    data = _read_json(path)
    if not isinstance(data, dict) or not data:
        raise SourceError("global_energy_mix.json: expected an object keyed by ISO alpha-3")
    out: dict[str, tuple[float, int, float]] = {}
    for key, entry in data.items():
        what = f"global_energy_mix.json[{key}]"
        if not isinstance(entry, dict) or "carbon_intensity" not in entry or "year" not in entry:
            raise SourceError(f"{what}: needs 'carbon_intensity' and 'year'")
        total = entry.get("total_TWh", 0.0)
        generation = float(total) if isinstance(total, (int, float)) else 0.0
        out[str(key).upper()] = (
            _intensity(entry["carbon_intensity"], what),
            _year(entry["year"], what),
            max(generation, 0.0),
        )
    return out


def _eco2ai_countries(src: Path) -> dict[str, float]:
    path = src / "carbon_index.csv"
    if not path.exists():
        return {}
    out: dict[str, float] = {}
    for row in _read_csv(path):
        if row.get("region") != "Whole country":
            continue
        a3 = row.get("alpha_3_code", "").upper()
        value = row.get("Emission intensity, kg/MWh", "")
        if re.fullmatch(r"[A-Z]{3}", a3) and value:
            out[a3] = _intensity(value, f"carbon_index.csv[{a3}]")
    return out


def _green_algorithms(src: Path, names: Mapping[str, str]) -> list[Row] | None:
    path = src / "CI_aggregated.csv"
    if not path.exists():
        return None
    rows = _read_csv(path, skip_lines=1)  # first line is a units banner
    out: list[Row] = []
    for row in rows:
        location = row.get("location", "")
        if row.get("Type") != "Region" or location[:2] not in GA_COUNTRIES or "-" not in location:
            continue
        zone = GA_RENAMES.get(location, location)
        country, code = zone.split("-", 1)
        text = f"{row.get('source', '')} {row.get('comments', '')}"
        match = re.search(r"data from (\d{4})", text, flags=re.IGNORECASE)
        if match is None:
            raise SourceError(f"CI_aggregated.csv[{location}]: no 'data from YYYY' in source")
        out.append(
            {
                "zone": zone,
                "country": country,
                "code": code,
                "name": names.get(zone) or row.get("regionName", code),
                "intensity_g_per_kwh": _fmt(
                    _intensity(row.get("carbonIntensity", ""), f"CI_aggregated.csv[{location}]")
                ),
                "year": str(_year(match.group(1), location)),
                "source": SRC_GREEN_ALGORITHMS,
                "note": row.get("source", ""),
            }
        )
    if not out:
        raise SourceError("CI_aggregated.csv: no US/CA/AU region rows found")
    return out


def _newest(src: Path, pattern: str) -> tuple[int, Path] | None:
    """(year, path) of the newest ``<prefix><YEAR>.csv`` in ``src`` matching ``pattern``."""
    found = sorted(
        (int(m.group(1)), p) for p in src.glob("*.csv") if (m := re.fullmatch(pattern, p.name))
    )
    if not found:
        return None
    year, path = found[-1]
    _year(year, path.name)
    return year, path


def _egrid(src: Path) -> list[Row] | None:
    """US state rows from the newest ``egrid-state-<YEAR>.csv`` (eGRID's ``ST<YY>`` sheet)."""
    newest = _newest(src, r"egrid-state-(\d{4})\.csv")
    if newest is None:
        return None
    year, path = newest
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path.name}: cannot read CSV ({exc})") from None
    # eGRID's workbook has a row of long names above the short codes: start at the codes
    start = next((i for i, line in enumerate(lines[:5]) if "PSTATABB" in line), None)
    if start is None or "STC2ERTA" not in lines[start]:
        raise SourceError(f"{path.name}: needs eGRID's short-code header (PSTATABB, STC2ERTA)")
    out: list[Row] = []
    for row in csv.DictReader(io.StringIO("".join(lines[start:]))):
        state = (row.get("PSTATABB") or "").strip().upper()
        if not re.fullmatch(r"[A-Z]{2}", state) or state == "PR":
            continue  # Puerto Rico is its own ISO 3166-1 country, on the national basis
        if row.get("YEAR") and _year(row["YEAR"], path.name) != year:
            raise SourceError(f"{path.name}[{state}]: data year {row['YEAR']} is not {year}")
        raw = (row.get("STC2ERTA") or "").replace(",", "").strip()
        try:
            lb_per_mwh = float(raw)
        except ValueError:
            raise SourceError(f"{path.name}[{state}]: STC2ERTA {raw!r} is not a number") from None
        value = _intensity(lb_per_mwh * LB_PER_MWH_TO_G_PER_KWH, f"{path.name}[{state}]")
        out.append(
            {
                "zone": f"US-{state}",
                "country": "US",
                "code": state,
                "name": "",
                "intensity_g_per_kwh": _fmt(value),
                "year": str(year),
                "source": SRC_EGRID,
                "note": f"EPA eGRID{year} state CO2e total output emission rate (STC2ERTA) "
                f"{raw} lb/MWh x 0.45359237",
            }
        )
    if not out:
        raise SourceError(f"{path.name}: no state rows")
    return out


NGA_FILE = "nga-scope2.csv"


def _nga(src: Path) -> list[Row] | None:
    """Australian zone rows from ``nga-scope2.csv`` (NGA Factors, Table 1, scope 2)."""
    path = src / NGA_FILE
    if not path.exists():
        return None
    out: list[Row] = []
    for row in _read_csv(path):
        zone = row.get("zone", "")
        what = f"{NGA_FILE}[{zone}]"
        if not re.fullmatch(r"AU-[A-Z]+(-[A-Z]+)?", zone):
            raise SourceError(f"{what}: zone must be an AU-... code")
        try:
            kg = float(row.get("kg_co2e_per_kwh", ""))
        except ValueError:
            raise SourceError(f"{what}: kg_co2e_per_kwh is not a number") from None
        edition = _year(row.get("edition", ""), what)
        upstream = (
            f"National Greenhouse Accounts Factors {edition}, Table 1, scope 2: {kg:g} kg/kWh"
        )
        note = row.get("note", "")
        out.append(
            {
                "zone": zone,
                "country": "AU",
                "code": zone[3:],
                "name": "",
                "intensity_g_per_kwh": _fmt(_intensity(kg * 1000, what)),
                "year": str(edition),
                "source": SRC_NGA,
                "note": f"{upstream}; {note}" if note else upstream,
            }
        )
    if not out:
        raise SourceError(f"{NGA_FILE}: no rows")
    return out


def _subnational(src: Path, names: Mapping[str, str], current: Sequence[Row]) -> list[Row]:
    """The newest figure for each sub-national zone among the sources given and ``current``.

    ``current`` (the shipped rows) loses to a supplied source of the same year; the Nordic
    bidding zones are rebuilt separately and not taken from here.
    """
    kept = [dict(r) for r in current if r.get("source") not in (SRC_OWID, SRC_WORLD)]
    candidates: list[list[Row]] = [kept]
    for fresh in (_green_algorithms(src, names), _egrid(src), _nga(src)):
        if fresh is not None:
            for row in fresh:
                row.update(
                    _provenance(row["intensity_g_per_kwh"], row["year"], row["source"], "")
                    | {"note": _zone_note(row)}
                )
            candidates.append(fresh)
    best: dict[str, tuple[int, int, Row]] = {}
    for rank, rows in enumerate(candidates):
        for row in rows:
            key = (int(row["year"]), rank)
            if row["zone"] not in best or key >= best[row["zone"]][:2]:
                best[row["zone"]] = (*key, row)
    old_names = {r["zone"]: r.get("name", "") for r in current}
    out = []
    for zone, (_, _, row) in best.items():
        row["name"] = names.get(zone) or row.get("name") or old_names.get(zone) or row["code"]
        out.append(row)
    return out


def _nordic(by_a2: Mapping[str, Row]) -> list[Row]:
    out: list[Row] = []
    for key, name in NORDIC_NAMES.items():
        national = by_a2.get(key[:2])
        if national is None:
            continue
        out.append(
            {
                "zone": f"{key[:2]}-{key}",
                "country": key[:2],
                "code": key,
                "name": name,
                **{k: national[k] for k in PROVENANCE if k != "note"},
                "note": f"no sourced bidding-zone figure on the national basis: figure of "
                f"{key[:2]}",
            }
        )
    return out


def _google(src: Path) -> tuple[int, dict[str, float]] | None:
    """(year, region → Google's published grid intensity) from the newest Google yearly file."""
    found = sorted(
        (int(m.group(1)), p)
        for p in src.glob("google-cloud-*.csv")
        if (m := re.fullmatch(r"google-cloud-(\d{4})\.csv", p.name))
    )
    if not found:
        return None
    year, path = found[-1]
    _year(year, path.name)
    out: dict[str, float] = {}
    for row in _read_csv(path):
        region = row.get("Google Cloud Region", "").strip().lower()
        raw = next((v for k, v in row.items() if k.startswith("Grid carbon intensity")), "")
        if not region:
            raise SourceError(f"{path.name}: needs a 'Google Cloud Region' column")
        region = CLOUD_REGION_FIXES.get(region, region)
        out[region] = _intensity(raw, f"{path.name}[{region}]")
    if not out:
        raise SourceError(f"{path.name}: no regions")
    return year, out


def _locations(src: Path, current: Path) -> list[Row]:
    path = src / "cloud_region_locations.csv"
    rows = _read_csv(path) if path.exists() else read_table(current / "cloud_region_locations.csv")
    for row in rows:
        if set(LOCATION_COLUMNS) - set(row):
            raise SourceError(f"cloud_region_locations.csv: needs columns {LOCATION_COLUMNS}")
    return rows


# --------------------------------------------------------------------------- build
def _countries(src: Path, iso: Sequence[Row]) -> tuple[list[Row], dict[str, Row]]:
    """Country rows (and the world row) from the national sources in ``src``."""
    grapher = _owid_grapher(src)
    owid = _owid(src, required=grapher is None)
    eco = _eco2ai_countries(src)

    if grapher is not None:
        owid.update(grapher[0])
        world, world_year = grapher[1]
        world_note = "Our World in Data's World figure"
    else:
        weighted = [(v, g) for v, _, g in owid.values() if g > 0]
        if not weighted:
            raise SourceError("global_energy_mix.json: no generation figures for a world average")
        world = sum(v * g for v, g in weighted) / sum(g for _, g in weighted)
        world_year = max(y for _, y, _ in owid.values())
        world_note = "generation-weighted mean of the owid country rows"

    by_a2: dict[str, Row] = {}
    countries: list[Row] = []
    for entry in iso:
        a2, a3 = entry["alpha2"], entry["alpha3"]
        row: Row = {"alpha2": a2, "alpha3": a3, "name": entry["name"]}
        if a3 in owid:
            value, year, _ = owid[a3]
            row.update(_provenance(_fmt(value), str(year), SRC_OWID, ""))
        elif a3 in eco:
            row.update(_provenance(_fmt(eco[a3]), "2022", SRC_ECO2AI, ""))
        else:
            row.update(
                _provenance(
                    _fmt(world), str(world_year), SRC_WORLD, "no public figure: world average"
                )
            )
        by_a2[a2] = row
        countries.append(row)
    for a2, parent in PROXIES.items():
        proxied = by_a2.get(a2)
        target = by_a2.get(parent)
        if proxied is None or target is None or proxied["source"] != SRC_WORLD:
            continue
        proxied.update({k: target[k] for k in PROVENANCE})
        proxied["note"] = f"no own figure: grid of {parent} (interconnected)"
    countries.append(
        {
            "alpha2": "WORLD",
            "alpha3": "WLD",
            "name": "World",
            **_provenance(
                _fmt(world),
                str(world_year),
                SRC_OWID,
                world_note,
            ),
        }
    )

    return countries, by_a2


def build_tables(src: Path, current: Path = DATA_DIR) -> Tables:
    """Rebuild every table from the source files in ``src``.

    ``current`` is the directory of the tables in force: rows of a source that is absent from
    ``src`` are kept from there.

    Raises:
        SourceError: a source file is missing (the required one) or malformed.
    """
    iso = _iso_rows(src, current)
    names = _subdivision_names(src)
    kept = read_table(current / "countries.csv")
    if not (src / GRAPHER_FILE).exists() and not (src / "global_energy_mix.json").exists() and kept:
        # no national source supplied: the shipped national rows stay as they are
        countries = kept
        by_a2 = {r["alpha2"]: r for r in kept}
    else:
        countries, by_a2 = _countries(src, iso)

    zones = _subnational(src, names, read_table(current / "zones.csv")) + _nordic(by_a2)
    zones.sort(key=lambda r: r["zone"])

    locations = _locations(src, current)
    google = _google(src)
    old_cloud = {(r["provider"], r["region"]): r for r in read_table(current / "cloud_regions.csv")}
    zone_rows = {r["zone"]: r for r in zones}
    cloud: list[Row] = []
    for loc in locations:
        provider, region, zone = loc["provider"], loc["region"], loc["zone"]
        country = zone[:2]
        if country not in by_a2:
            raise SourceError(f"cloud_region_locations.csv[{provider}:{region}]: zone {zone!r}")
        base = zone_rows.get(zone) or by_a2[country]
        row = {
            "provider": provider,
            "region": region,
            "country": country,
            "zone": zone,
            "location": loc["location"],
            **{k: base[k] for k in PROVENANCE},
            "note": _cloud_note(zone, base, by_a2[country]),
        }
        old = old_cloud.get((provider, region), {})
        if provider == "gcp" and google is not None and region in google[1]:
            row.update(
                published_g_per_kwh=_fmt(google[1][region]),
                published_year=str(google[0]),
                published_source=SRC_GOOGLE,
                published_basis=SOURCE_META[SRC_GOOGLE][0],
            )
        elif google is None and old.get("published_source") == SRC_GOOGLE:
            row.update({k: old[k] for k in PUBLISHED})
        cloud.append(row)
    return Tables(iso=iso, countries=countries, zones=zones, cloud=cloud, locations=locations)


def _provenance(value: str, year: str, source: str, note: str) -> Row:
    basis, licence = SOURCE_META[source]
    return {
        "intensity_g_per_kwh": value,
        "year": year,
        "source": source,
        "basis": basis,
        "licence": licence,
        "note": note,
    }


def _cloud_note(zone: str, base: Row, national: Row) -> str:
    if base["basis"] != national["basis"]:
        return f"grid of {zone}: {ZONE_BASIS_NOTES.get(zone[:2], base['basis'] + ' basis')}"
    return f"grid of {zone}"


def _zone_note(row: Row) -> str:
    upstream = row.get("note", "")
    reason = ZONE_BASIS_NOTES.get(row["country"], "")
    if reason and not upstream.startswith(reason):
        return f"{reason}; upstream: {upstream}" if upstream else reason
    return upstream


def _write(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})


def write_tables(tables: Tables, out: Path) -> list[Path]:
    """Write ``tables`` as CSV files into ``out`` (created if needed); returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    plan: list[tuple[str, Sequence[str], list[Row]]] = [
        ("iso3166.csv", ISO_COLUMNS, tables.iso),
        ("countries.csv", COUNTRY_COLUMNS, tables.countries),
        ("zones.csv", ZONE_COLUMNS, tables.zones),
        ("cloud_regions.csv", CLOUD_COLUMNS, tables.cloud),
        ("cloud_region_locations.csv", LOCATION_COLUMNS, tables.locations),
    ]
    paths = []
    for name, columns, rows in plan:
        _write(out / name, columns, rows)
        paths.append(out / name)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python tools/refresh_tables.py --from DIR``."""
    parser = argparse.ArgumentParser(
        prog="python tools/refresh_tables.py",
        description="Rebuild hf-eco2ai's carbon-intensity tables from downloaded source files.",
    )
    parser.add_argument("--from", dest="src", required=True, type=Path, help="source directory")
    parser.add_argument(
        "--out", type=Path, default=DATA_DIR, help=f"output directory (default: {DATA_DIR})"
    )
    parser.add_argument(
        "--current",
        type=Path,
        default=None,
        help="tables whose rows are kept for absent sources (default: --out)",
    )
    args = parser.parse_args(argv)
    current = args.current if args.current is not None else args.out
    try:
        tables = build_tables(args.src, current)
    except SourceError as exc:
        print(f"refresh_tables: {exc}", file=sys.stderr)
        return 1
    for path in write_tables(tables, args.out):
        print(f"wrote {path}")
    print(
        f"{len(tables.countries)} country rows, {len(tables.zones)} zones, "
        f"{len(tables.cloud)} cloud regions"
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
