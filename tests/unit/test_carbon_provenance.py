"""The carbon tables say what each figure is, one grid has one figure, and the docs count right."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from hf_eco2ai.carbon import tables
from hf_eco2ai.carbon.countries import read_data_text

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "carbon-intensity.md"
DATA_README = ROOT / "src" / "hf_eco2ai" / "carbon" / "data" / "README.md"

SOURCES = {"owid", "world-average", "green-algorithms", "egrid", "nga", "eco2ai"}
LICENCES = {"CC-BY-4.0", "Apache-2.0", "public-domain"}
#: sub-national sources: each states its years in the docs
SUBNATIONAL = ("egrid", "nga", "green-algorithms")
SOURCE_RE = re.compile(r"^(table:[a-z0-9-]+|world-average)@\d{4}/(lifecycle|direct|unstated)$")


def _csv(name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read_data_text(name))))


def _national() -> dict[str, dict[str, str]]:
    return {r["alpha2"]: r for r in _csv("countries.csv")}


def _zones() -> dict[str, dict[str, str]]:
    return {r["zone"]: r for r in _csv("zones.csv")}


@pytest.mark.parametrize("name", ["countries.csv", "zones.csv", "cloud_regions.csv"])
def test_every_row_states_basis_year_source_licence(name: str) -> None:
    rows = _csv(name)
    assert rows
    for row in rows:
        assert row["basis"] in tables.BASES, row
        assert row["basis"] != "unstated", row  # only eco2ai's own table is unstated
        assert row["source"] in SOURCES, row
        assert row["licence"] in LICENCES, row
        assert re.fullmatch(r"(19|20)\d\d", row["year"]), row
        assert 0 <= float(row["intensity_g_per_kwh"]) <= 2000, row


def test_the_national_table_is_one_definition() -> None:
    assert {r["basis"] for r in _national().values()} == {"lifecycle"}


def test_lookups_carry_the_basis_and_year_in_the_source() -> None:
    for row in _csv("zones.csv"):
        ci = tables.region_intensity(row["country"], row["code"])
        assert SOURCE_RE.match(ci.source), ci
        assert ci.source.endswith(f"@{row['year']}/{row['basis']}")
    for region in tables.cloud_regions():
        assert SOURCE_RE.match(region.intensity().source), region
    assert tables.country_intensity("FR").source.endswith("/lifecycle")
    assert SOURCE_RE.match(tables.world_average().source)
    assert SOURCE_RE.match(tables.country_intensity("AQ").source)


def test_a_cloud_region_has_its_zones_or_countrys_figure() -> None:
    national, zones = _national(), _zones()
    provenance = ("intensity_g_per_kwh", "year", "source", "basis", "licence")
    for row in _csv("cloud_regions.csv"):
        base = zones.get(row["zone"]) or national[row["country"]]
        assert {k: row[k] for k in provenance} == {k: base[k] for k in provenance}, row
        country = national[row["country"]]
        if row["intensity_g_per_kwh"] != country["intensity_g_per_kwh"]:
            # differs from its country only through a zone whose row says why
            assert row["zone"] in zones, row
            assert row["basis"] != country["basis"], row
            assert f"{row['basis']} basis" in row["note"], row
            assert f"{row['basis']} basis" in zones[row["zone"]]["note"], row


def test_the_same_grid_gets_the_same_figure_on_every_cloud() -> None:
    by_zone: dict[str, set[tuple[float, str]]] = defaultdict(set)
    for region in tables.cloud_regions():
        ci = region.intensity()
        by_zone[region.zone].add((ci.value, ci.source))
    assert all(len(figures) == 1 for figures in by_zone.values()), by_zone
    paris = {tables.cloud_region_intensity(r).value for r in ("eu-west-3", "francecentral")}
    paris.add(tables.cloud_region_intensity("europe-west9", "gcp").value)
    assert paris == {tables.country_intensity("FR").value}
    stockholm = tables.cloud_region_intensity("eu-north-1", "aws")
    assert stockholm.value == tables.country_intensity("SE").value
    sydney = {
        tables.cloud_region_intensity(r).value
        for r in ("ap-southeast-2", "australiaeast", "australia-southeast1")
    }
    assert sydney == {tables.region_intensity("AU", "NSW").value}


def test_zones_off_the_national_basis_say_why() -> None:
    national = _national()
    for row in _zones().values():
        country = national[row["country"]]
        if row["basis"] != country["basis"]:
            assert f"{row['basis']} basis" in row["note"], row
            assert "no lifecycle figure" in row["note"], row


def test_no_placeholder_figures() -> None:
    """A zone's figure is sourced for that zone, or is its country's figure said as such."""
    national = _national()
    same: Counter[tuple[str, str, str]] = Counter()
    for row in _zones().values():
        country = national[row["country"]]
        if row["source"] == country["source"]:
            # a fallback: exactly the national figure, and the note says so
            for key in ("intensity_g_per_kwh", "year", "basis", "licence"):
                assert row[key] == country[key], row
            assert row["note"].endswith(f"figure of {row['country']}"), row
            continue
        same[(row["country"], row["source"], row["intensity_g_per_kwh"])] += 1
    # one sourced figure shared by three or more zones of a country is a placeholder
    assert max(same.values()) <= 2, same.most_common(3)
    for zone in ("SE-SE1", "SE-SE3", "NO-NO1", "NO-NO4"):
        assert tables.find_zone(None, zone) is not None
        assert tables.region_intensity(zone[:2], zone).value == float(
            national[zone[:2]]["intensity_g_per_kwh"]
        )


def test_google_published_figures_are_reference_only() -> None:
    published = [r for r in tables.cloud_regions() if r.published_value is not None]
    assert published
    for region in published:
        assert region.provider == "gcp"
        assert region.published_basis == "direct"
        assert region.published_year.isdigit()
        assert region.source != "google-cloud"


# --------------------------------------------------------------------------- docs vs data
def _counts() -> dict[str, int]:
    cloud = Counter(r.provider for r in tables.cloud_regions())
    zones = Counter(r["country"] for r in _csv("zones.csv"))
    countries = _csv("countries.csv")
    return {
        "iso": len(_csv("iso3166.csv")),
        "countries": sum(r["alpha2"] != "WORLD" for r in countries),
        "own": sum(r["source"] == "owid" and not r["note"] for r in countries),
        "world": sum(r["source"] == "world-average" for r in countries),
        "proxied": sum(r["note"].startswith("no own figure: grid of") for r in countries),
        "zones": sum(zones.values()),
        "US": zones["US"],
        "CA": zones["CA"],
        "AU": zones["AU"],
        "SE": zones["SE"],
        "NO": zones["NO"],
        "cloud": sum(cloud.values()),
        "aws": cloud["aws"],
        "gcp": cloud["gcp"],
        "azure": cloud["azure"],
        "locations": len(_csv("cloud_region_locations.csv")),
    }


def _one(pattern: str, text: str) -> tuple[int, ...]:
    match = re.search(pattern, text)
    assert match is not None, pattern
    return tuple(int(g) for g in match.groups())


def test_the_data_readme_counts_match_the_tables() -> None:
    text = DATA_README.read_text(encoding="utf-8")
    n = _counts()
    assert _one(r"`iso3166\.csv` \| (\d+) \|", text) == (n["iso"],)
    assert _one(r"`countries\.csv` \| (\d+) \+ `WORLD`", text) == (n["countries"],)
    assert _one(r"`zones\.csv` \| (\d+) \|", text) == (n["zones"],)
    assert _one(r"`cloud_regions\.csv` \| (\d+) \|", text) == (n["cloud"],)
    assert _one(r"`cloud_region_locations\.csv` \| (\d+) \|", text) == (n["locations"],)
    assert _one(r"(\d+) AWS, (\d+) GCP and (\d+) Azure", text) == (n["aws"], n["gcp"], n["azure"])
    assert _one(r"(\d+) countries have their own", text) == (n["own"],)
    assert _one(r"\| (\d+) territories with no published figure", text) == (n["world"],)
    words = {"Nine": 9}
    match = re.search(r"(\w+) territories without their own figure take", text)
    assert match is not None
    assert words.get(match.group(1), -1) == n["proxied"]
    assert _one(r"US \((\d+)\), Canada \((\d+)\), Australia \((\d+)\)", text) == (
        n["US"],
        n["CA"],
        n["AU"],
    )


def test_the_docs_page_counts_match_the_tables() -> None:
    text = DOC.read_text(encoding="utf-8")
    n = _counts()
    assert _one(r"all (\d+) ISO 3166-1 countries", text) == (n["iso"],)
    assert _one(r"\| (\d+): (\d+) US \(50 states \+ DC\), (\d+) Canadian", text) == (
        n["zones"],
        n["US"],
        n["CA"],
    )
    assert _one(r"(\d+) Australian states and grids, (\d+) Swedish and (\d+) Norwegian", text) == (
        n["AU"],
        n["SE"],
        n["NO"],
    )
    assert _one(r"\| (\d+): (\d+) AWS, (\d+) GCP and (\d+) Azure regions", text) == (
        n["cloud"],
        n["aws"],
        n["gcp"],
        n["azure"],
    )


def test_the_docs_state_the_years_and_licences_of_the_data() -> None:
    doc = DOC.read_text(encoding="utf-8")
    readme = DATA_README.read_text(encoding="utf-8")
    owid_years = sorted({r["year"] for r in _csv("countries.csv") if r["source"] == "owid"})
    recent = [y for y in owid_years if y >= "2021"]
    assert f"{recent[0]}–{recent[-1]}" in doc
    assert f"{recent[0]}–{recent[-1]}" in readme
    published = {r.published_year for r in tables.cloud_regions() if r.published_value}
    assert len(published) == 1
    year = published.pop()
    assert f"{year}, Apache-2.0" in doc
    assert f"data/yearly/{year}.csv" in readme
    assert "Apache-2.0 (the repository's licence)" in readme
    assert "ENTSO-E data" not in readme  # the old, wrong description of the placeholder
    zones = _csv("zones.csv")
    for source in SUBNATIONAL:
        years = sorted({r["year"] for r in zones if r["source"] == source})
        assert years, source
        # the data README's sources table gives each sub-national source's year(s) on its row
        span = years[0] if len(years) == 1 else f"{years[0]}–{years[-1]}"
        assert re.search(rf"^\| `{source}` \|[^\n]*\| {span} \|", readme, re.M), (source, span)
    all_years = sorted({r["year"] for r in zones if r["source"] in SUBNATIONAL})
    assert f"{all_years[0]}–{all_years[-1]}" in doc
    licences = {r["licence"] for r in zones if r["source"] == "egrid"}
    assert licences == {"public-domain"}


def test_zone_figures_follow_their_published_units() -> None:
    """eGRID rows are lb/MWh x 0.45359237, NGA rows kg/kWh x 1000, both stated in the note."""
    for row in _csv("zones.csv"):
        value = float(row["intensity_g_per_kwh"])
        if row["source"] == "egrid":
            match = re.search(r"\(STC2ERTA\) ([\d.]+) lb/MWh", row["note"])
            assert match is not None, row
            assert value == pytest.approx(float(match.group(1)) * 0.45359237, abs=5e-4), row
        elif row["source"] == "nga":
            match = re.search(r"Factors (\d{4}), Table 1, scope 2: ([\d.]+) kg/kWh", row["note"])
            assert match is not None, row
            assert match.group(1) == row["year"], row
            assert value == pytest.approx(float(match.group(2)) * 1000), row


def test_the_figures_the_docs_quote_are_the_tables() -> None:
    doc = DOC.read_text(encoding="utf-8")
    world = tables.world_average()
    assert f"({world.value:.1f} gCO2e/kWh, {tables.world_average_year()})" in doc
    fr = tables.country_intensity("FR")
    assert f"# {fr.source}, {fr.value:.1f} g/kWh" in doc
    pl = tables.country_intensity("PL")
    assert f"CarbonIntensity(value={pl.value}, zone='PL', source='{pl.source}')" in doc
