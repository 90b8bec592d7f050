"""Carbon-intensity tables: countries, sub-national zones, cloud regions, world average.

Every lookup returns a :class:`~hf_eco2ai.carbon.intensity.CarbonIntensity` whose ``source`` says
which dataset, year and basis the figure comes from (``table:<dataset>@<year>/<basis>``, e.g.
``table:owid@2024/lifecycle``; :data:`BASES`) and whose ``zone`` names the grid (``FR``, ``US-CA``,
``aws:us-east-1→US-VA``). A cloud region has the figure of the zone or country it sits in, so a
grid has one figure whichever cloud runs there. The CSV files under ``data/`` are read lazily on
first use and cached; nothing is read at import time.

``table='eco2ai'`` looks countries and regions up in the carbon index shipped by an installed
``eco2ai`` package, read as a data file: eco2ai itself is never imported. Its basis is not stated
by eco2ai, and the source says so (``table:eco2ai@<version>/unstated``).

Example:
    >>> country_intensity("FRA").zone
    'FR'
    >>> region_intensity("US", "California").zone
    'US-CA'
    >>> cloud_region_intensity("us-east-1").zone
    'aws:us-east-1→US-VA'
    >>> world_average().source
    'world-average@2024/lifecycle'
"""

from __future__ import annotations

import csv
import functools
import importlib.metadata
import importlib.util
import io
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from hf_eco2ai.carbon.countries import get_country, read_data_text
from hf_eco2ai.carbon.intensity import CarbonIntensity
from hf_eco2ai.errors import ConfigError

logger = logging.getLogger("hf_eco2ai.carbon")

#: Values of ``CarbonConfig.carbon_table``.
TABLES = ("builtin", "eco2ai")
#: Zone label and source of the last-resort world average.
WORLD_ZONE = "WORLD"
WORLD_SOURCE = "world-average"
#: Cloud providers known to the cloud-region table.
PROVIDERS = ("aws", "gcp", "azure")
#: ``basis`` values of the table rows: ``lifecycle`` counts each source's life-cycle emissions
#: (construction, fuel supply, combustion; Ember's method, used by Our World in Data);
#: ``direct`` counts combustion at the plant only (eGRID, national inventories, Google's
#: "operational" figures); ``unstated``: the source does not say (eco2ai's index).
BASES = ("lifecycle", "direct", "unstated")
_PROVIDER_ALIASES = {"amazon": "aws", "google": "gcp", "gce": "gcp", "microsoft": "azure"}


@dataclass(frozen=True, slots=True)
class TableEntry:
    """One row of a country or zone table."""

    zone: str
    country: str
    name: str
    value: float
    year: str
    source: str
    basis: str
    licence: str
    note: str = ""

    @property
    def source_label(self) -> str:
        """``table:<dataset>@<year>/<basis>``; ``world-average@<year>/<basis>`` without a figure.

        >>> country_entry("FR").source_label
        'table:owid@2024/lifecycle'
        """
        return _label(self.source, self.year, self.basis)

    def intensity(self) -> CarbonIntensity:
        """This row as a :class:`CarbonIntensity`."""
        return CarbonIntensity(self.value, zone=self.zone, source=self.source_label)


@dataclass(frozen=True, slots=True)
class CloudRegion:
    """One cloud region: where it is and the grid intensity there."""

    provider: str
    region: str
    country: str
    zone: str
    location: str
    value: float
    year: str
    source: str
    basis: str
    licence: str
    note: str = ""
    #: A figure the provider publishes for the region (Google), not used by the lookups: its
    #: basis differs from the national one. ``None`` when the provider publishes none.
    published_value: float | None = None
    published_year: str = ""
    published_source: str = ""
    published_basis: str = ""

    @property
    def label(self) -> str:
        """``<provider>:<region>→<zone>``, the zone label of its intensity."""
        return f"{self.provider}:{self.region}→{self.zone}"

    def intensity(self) -> CarbonIntensity:
        """This region's grid intensity as a :class:`CarbonIntensity`."""
        return CarbonIntensity(
            self.value, zone=self.label, source=_label(self.source, self.year, self.basis)
        )


def _label(source: str, year: str, basis: str) -> str:
    head = WORLD_SOURCE if source == WORLD_SOURCE else f"table:{source}"
    return f"{head}@{year}/{basis}"


# --------------------------------------------------------------------------- loading
def _rows(name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read_data_text(name))))


@functools.lru_cache(maxsize=1)
def _countries() -> dict[str, TableEntry]:
    out: dict[str, TableEntry] = {}
    for r in _rows("countries.csv"):
        entry = TableEntry(
            zone=r["alpha2"],
            country=r["alpha2"],
            name=r["name"],
            value=float(r["intensity_g_per_kwh"]),
            year=r["year"],
            source=r["source"],
            basis=r["basis"],
            licence=r["licence"],
            note=r["note"],
        )
        out[r["alpha2"]] = entry
    return out


@functools.lru_cache(maxsize=1)
def _zones() -> dict[str, TableEntry]:
    return {
        r["zone"]: TableEntry(
            zone=r["zone"],
            country=r["country"],
            name=r["name"],
            value=float(r["intensity_g_per_kwh"]),
            year=r["year"],
            source=r["source"],
            basis=r["basis"],
            licence=r["licence"],
            note=r["note"],
        )
        for r in _rows("zones.csv")
    }


@functools.lru_cache(maxsize=1)
def _cloud() -> dict[tuple[str, str], CloudRegion]:
    return {
        (r["provider"], r["region"]): CloudRegion(
            provider=r["provider"],
            region=r["region"],
            country=r["country"],
            zone=r["zone"],
            location=r["location"],
            value=float(r["intensity_g_per_kwh"]),
            year=r["year"],
            source=r["source"],
            basis=r["basis"],
            licence=r["licence"],
            note=r["note"],
            published_value=float(r["published_g_per_kwh"]) if r["published_g_per_kwh"] else None,
            published_year=r["published_year"],
            published_source=r["published_source"],
            published_basis=r["published_basis"],
        )
        for r in _rows("cloud_regions.csv")
    }


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.casefold())


# --------------------------------------------------------------------------- builtin lookups
def country_entry(country: str) -> TableEntry:
    """The built-in table row of a country (alpha-2 or alpha-3, any case).

    Raises:
        KeyError: not an ISO 3166-1 country code.

    >>> country_entry("pl").source
    'owid'
    """
    return _countries()[get_country(country).alpha2]


def country_intensity(country: str, *, table: str = "builtin") -> CarbonIntensity:
    """Yearly average grid intensity of a country.

    ``table='eco2ai'`` reads eco2ai's carbon index instead (see :func:`eco2ai_table_path`).

    Raises:
        KeyError: unknown country code, or (eco2ai) a country eco2ai's table lacks.

    >>> ci = country_intensity("FR")
    >>> ci.zone, ci.source
    ('FR', 'table:owid@2024/lifecycle')
    """
    if table == "eco2ai":
        return _eco2ai_lookup(get_country(country).alpha2, None)
    _check_table(table)
    return country_entry(country).intensity()


def find_zone(country: str | None, region: str) -> TableEntry | None:
    """The sub-national zone matching ``region`` (its code, full zone id or name), or ``None``.

    With ``country=None`` only full zone ids (``US-CA``, ``SE-SE3``) match.

    >>> find_zone("US", "ca").zone, find_zone("CAN", "Quebec").zone, find_zone(None, "au-nsw").zone
    ('US-CA', 'CA-QC', 'AU-NSW')
    """
    key = _norm(region)
    if not key:
        return None
    alpha2 = get_country(country).alpha2 if country is not None else None
    for entry in _zones().values():
        if alpha2 is None:
            if key == _norm(entry.zone):
                return entry
            continue
        if entry.country != alpha2:
            continue
        code = entry.zone.split("-", 1)[1]
        if key in (_norm(code), _norm(entry.zone), _norm(entry.name)):
            return entry
    return None


def region_intensity(country: str, region: str, *, table: str = "builtin") -> CarbonIntensity:
    """Grid intensity of a sub-national zone (US state, Canadian province, Australian state, …).

    Raises:
        KeyError: the country has no zone matching ``region`` in that table.

    >>> region_intensity("AUS", "VIC").zone
    'AU-VIC'
    """
    if table == "eco2ai":
        return _eco2ai_lookup(get_country(country).alpha2, region)
    _check_table(table)
    entry = find_zone(country, region)
    if entry is None:
        raise KeyError(f"{country}/{region}")
    return entry.intensity()


def split_provider(region: str) -> tuple[str | None, str]:
    """Split an optional ``provider:`` prefix off a cloud region name.

    >>> split_provider("aws:eu-west-3"), split_provider("westeurope")
    (('aws', 'eu-west-3'), (None, 'westeurope'))
    """
    if ":" in region:
        head, _, tail = region.partition(":")
        provider = _PROVIDER_ALIASES.get(head.strip().lower(), head.strip().lower())
        if provider in PROVIDERS:
            return provider, tail.strip()
    return None, region.strip()


def find_cloud_region(region: str, provider: str | None = None) -> CloudRegion | None:
    """The cloud region called ``region`` (optionally ``provider:region``), or ``None``.

    Azure display names are accepted (``"West Europe"`` → ``westeurope``).

    >>> find_cloud_region("West Europe").label
    'azure:westeurope→NL'
    >>> find_cloud_region("gcp:europe-west9").source
    'owid'
    """
    prefix, name = split_provider(region)
    if prefix is not None:
        provider = prefix
    if provider is not None:
        provider = _PROVIDER_ALIASES.get(provider.lower(), provider.lower())
    key = name.strip().lower()
    candidates = [key, key.replace(" ", "")]
    table = _cloud()
    for prov in (provider,) if provider is not None else PROVIDERS:
        for cand in candidates:
            found = table.get((prov, cand))
            if found is not None:
                return found
    return None


def cloud_region_intensity(region: str, provider: str | None = None) -> CarbonIntensity:
    """Grid intensity of a cloud region (AWS, GCP or Azure name).

    Raises:
        KeyError: unknown region.

    >>> gcp, aws = cloud_region_intensity("europe-west9", "gcp"), cloud_region_intensity("eu-west-3")
    >>> gcp.value == aws.value == country_intensity("FR").value
    True
    """
    found = find_cloud_region(region, provider)
    if found is None:
        raise KeyError(region)
    return found.intensity()


def cloud_regions() -> tuple[CloudRegion, ...]:
    """Every cloud region the table knows.

    >>> {r.provider for r in cloud_regions()} == {"aws", "gcp", "azure"}
    True
    """
    return tuple(_cloud().values())


def world_average() -> CarbonIntensity:
    """The world average, the last fallback (``zone='WORLD'``, ``source='world-average@…'``).

    It is the generation-weighted mean of the country rows, on their (lifecycle) basis.

    >>> 400 < world_average().value < 550
    True
    """
    entry = _countries()[WORLD_ZONE]
    return CarbonIntensity(
        entry.value, zone=WORLD_ZONE, source=_label(WORLD_SOURCE, entry.year, entry.basis)
    )


def world_average_year() -> str:
    """Year of the world-average figure."""
    return _countries()[WORLD_ZONE].year


def lookup(country: str, region: str | None = None, *, table: str = "builtin") -> CarbonIntensity:
    """Country (+ region) lookup with fallbacks, each announced by one warning.

    ``region`` may be a zone (``CA``, ``California``, ``US-CA``) or a cloud region name. An unknown
    region falls back to the country; with ``table='eco2ai'`` a country eco2ai lacks falls back to
    the built-in table.

    Raises:
        KeyError: ``country`` is not an ISO 3166-1 code.
        hf_eco2ai.errors.ConfigError: ``table`` is unknown or unavailable.

    >>> lookup("US", "WA").zone
    'US-WA'
    >>> lookup("DE", "eu-central-1").zone
    'aws:eu-central-1→DE'
    """
    ensure_table_available(table)
    alpha2 = get_country(country).alpha2
    if region is not None and region.strip():
        try:
            return region_intensity(alpha2, region, table=table)
        except KeyError:
            pass
        cloud = find_cloud_region(region)
        if cloud is not None:
            if cloud.country != alpha2:
                logger.warning(
                    "hf-eco2ai: cloud region %r is in %s, not %s; using the cloud region",
                    region,
                    cloud.country,
                    alpha2,
                )
            return cloud.intensity()
        try:
            fallback = country_intensity(alpha2, table=table)
        except KeyError:
            fallback = country_intensity(alpha2)
        logger.warning(
            "hf-eco2ai: no carbon-intensity figure for region %r of %s in the %s table; "
            "using the country average %.1f gCO2e/kWh (%s)",
            region,
            alpha2,
            table,
            fallback.value,
            fallback.source,
        )
        return fallback
    try:
        return country_intensity(alpha2, table=table)
    except KeyError:
        fallback = country_intensity(alpha2)
        logger.warning(
            "hf-eco2ai: country %s is not in the %s table; using the built-in figure "
            "%.1f gCO2e/kWh (%s)",
            alpha2,
            table,
            fallback.value,
            fallback.source,
        )
        return fallback


# --------------------------------------------------------------------------- eco2ai table
def _check_table(table: str) -> None:
    if table not in TABLES:
        raise ConfigError("carbon_table", table, "'builtin' or 'eco2ai'")


def eco2ai_table_path() -> Path | None:
    """Where an installed ``eco2ai`` keeps ``data/carbon_index.csv``; ``None`` if not installed.

    The package is located with :func:`importlib.util.find_spec`, which does not import it (eco2ai
    geolocates over the network when its tracker module is imported).

    >>> p = eco2ai_table_path()
    >>> p is None or p.name == "carbon_index.csv"
    True
    """
    try:
        spec = importlib.util.find_spec("eco2ai")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "carbon_index.csv"
        if path.is_file():
            return path
    return None


def ensure_table_available(table: str) -> None:
    """Check that ``table`` can be used; call it when validating the configuration.

    Raises:
        hf_eco2ai.errors.ConfigError: a :class:`ValueError` naming ``carbon_table`` and its env var
            ``OTEL_PYTHON_HF_ECO2AI_CARBON_TABLE``: unknown table, or ``eco2ai`` without the
            ``eco2ai`` extra installed.

    >>> ensure_table_available("builtin")
    """
    _check_table(table)
    if table == "eco2ai" and eco2ai_table_path() is None:
        raise ConfigError(
            "carbon_table",
            table,
            "'builtin', or 'eco2ai' once the eco2ai package is installed "
            "(pip install 'hf-eco2ai[eco2ai]'); eco2ai was not found",
        )


@dataclass(frozen=True, slots=True)
class _Eco2aiRow:
    country: str
    region: str
    names: frozenset[str]
    value: float


@functools.lru_cache(maxsize=4)
def _eco2ai_rows(path: Path) -> tuple[_Eco2aiRow, ...]:
    rows: list[_Eco2aiRow] = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for r in csv.DictReader(fh):
            try:
                value = float(r.get("Emission intensity, kg/MWh") or "")
            except ValueError:
                continue
            country = ""
            for code in (r.get("alpha_2_code") or "", r.get("alpha_3_code") or ""):
                try:
                    country = get_country(code).alpha2
                    break
                except KeyError:
                    continue
            if not country or not 0 <= value <= 2000:
                continue
            region = (r.get("region") or "").strip()
            alternatives = r.get("alternative_name") or ""
            names = {_norm(region)} | {_norm(a) for a in alternatives.split(",") if a.strip()}
            names.discard("")
            names.discard("na")
            rows.append(_Eco2aiRow(country, region, frozenset(names), value))
    return tuple(rows)


def _eco2ai_version() -> str:
    try:
        return importlib.metadata.version("eco2ai")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _eco2ai_lookup(alpha2: str, region: str | None) -> CarbonIntensity:
    path = eco2ai_table_path()
    if path is None:
        ensure_table_available("eco2ai")
    assert path is not None
    rows = [r for r in _eco2ai_rows(path) if r.country == alpha2]
    source = _label("eco2ai", _eco2ai_version(), "unstated")
    if region is None:
        for row in rows:
            if row.region == "Whole country":
                return CarbonIntensity(row.value, zone=alpha2, source=source)
        raise KeyError(alpha2)
    keys = {_norm(region)}
    zone_entry = find_zone(alpha2, region)
    if zone_entry is not None:
        keys |= {_norm(zone_entry.name), _norm(zone_entry.zone.split("-", 1)[1])}
    keys.discard("")
    for row in rows:
        if row.region != "Whole country" and keys & row.names:
            zone = zone_entry.zone if zone_entry is not None else f"{alpha2}-{row.region}"
            return CarbonIntensity(row.value, zone=zone, source=source)
    raise KeyError(f"{alpha2}/{region}")
