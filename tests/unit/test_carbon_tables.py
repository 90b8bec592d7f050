from __future__ import annotations

import csv
import importlib
import io
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from hf_eco2ai.carbon import tables
from hf_eco2ai.carbon.countries import all_countries, read_data_text
from hf_eco2ai.carbon.intensity import CarbonIntensity
from hf_eco2ai.config import ConfigError


def _csv(name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(read_data_text(name))))


# --------------------------------------------------------------------------- the data
def test_every_iso_country_has_a_row_with_provenance() -> None:
    rows = {r["alpha2"]: r for r in _csv("countries.csv")}
    iso = {c.alpha2 for c in all_countries()}
    assert iso <= set(rows)
    assert set(rows) - iso == {"WORLD"}
    for row in rows.values():
        assert 0 <= float(row["intensity_g_per_kwh"]) <= 2000, row
        assert 1990 <= int(row["year"]) <= 2100, row
        assert row["source"] in {"owid", "eco2ai", "world-average"}, row
        assert (row["basis"], row["licence"]) == ("lifecycle", "CC-BY-4.0"), row
    assert sum(r["source"] == "owid" for r in rows.values()) > 200
    assert rows["JE"]["note"].startswith("no own figure: grid of FR")


def test_zone_table_covers_us_canada_australia() -> None:
    rows = _csv("zones.csv")
    by_country: dict[str, int] = {}
    for row in rows:
        by_country[row["country"]] = by_country.get(row["country"], 0) + 1
        assert row["zone"] == f"{row['country']}-{row['code']}"
        assert 0 <= float(row["intensity_g_per_kwh"]) <= 2000
        assert row["source"]
        assert row["year"].isdigit()
    assert by_country["US"] == 51  # 50 states + DC
    assert by_country["CA"] == 13
    assert by_country["AU"] >= 8


def test_cloud_table() -> None:
    regions = tables.cloud_regions()
    for provider in ("aws", "gcp", "azure"):
        assert sum(r.provider == provider for r in regions) >= 30
    iso = {c.alpha2 for c in all_countries()}
    for region in regions:
        assert region.country in iso
        assert region.zone.startswith(region.country)
        assert 0 <= region.value <= 2000
        assert region.label == f"{region.provider}:{region.region}→{region.zone}"
    published = [r for r in regions if r.published_value is not None]
    assert {r.provider for r in published} == {"gcp"}
    assert {(r.published_source, r.published_basis) for r in published} == {
        ("google-cloud", "direct")
    }
    assert {"us-east2", "us-central2"} <= {r.region for r in published}


# --------------------------------------------------------------------------- lookups
def test_country_lookup_alpha2_and_alpha3() -> None:
    row = next(r for r in _csv("countries.csv") if r["alpha2"] == "FR")
    expected = CarbonIntensity(
        float(row["intensity_g_per_kwh"]),
        zone="FR",
        source=f"table:owid@{row['year']}/lifecycle",
    )
    assert tables.country_intensity("FR") == expected
    assert tables.country_intensity("fra") == expected
    assert tables.country_intensity(" Fr ") == expected
    assert tables.country_intensity("PL").value > 500


def test_country_without_figure_is_world_average_source() -> None:
    ci = tables.country_intensity("AQ")
    assert ci.source == f"world-average@{tables.world_average_year()}/lifecycle"
    assert ci.zone == "AQ"
    assert ci.value == tables.world_average().value


def test_unknown_country() -> None:
    with pytest.raises(KeyError):
        tables.country_intensity("XX")
    with pytest.raises(ConfigError):
        tables.country_intensity("FR", table="nope")


@pytest.mark.parametrize(
    ("country", "region", "zone"),
    [
        ("US", "CA", "US-CA"),
        ("USA", "california", "US-CA"),
        ("US", "US-CA", "US-CA"),
        ("US", "new york", "US-NY"),
        ("US", "DC", "US-DC"),
        ("CA", "ON", "CA-ON"),
        ("CAN", "Quebec", "CA-QC"),
        ("CA", "MB", "CA-MB"),
        ("AU", "NSW", "AU-NSW"),
        ("AU", "Western Australia", "AU-WA"),
        ("AU", "WA-NWIS", "AU-WA-NWIS"),
        ("SE", "SE3", "SE-SE3"),
        ("NO", "NO-NO5", "NO-NO5"),
    ],
)
def test_region_lookup(country: str, region: str, zone: str) -> None:
    ci = tables.region_intensity(country, region)
    assert ci.zone == zone
    assert ci.source.startswith("table:")


def test_region_lookup_unknown() -> None:
    with pytest.raises(KeyError):
        tables.region_intensity("US", "Atlantis")
    with pytest.raises(KeyError):
        tables.region_intensity("FR", "IDF")
    assert tables.find_zone("US", "  ") is None
    assert tables.find_zone(None, "CA") is None  # a bare code needs its country
    assert tables.find_zone(None, "ca-on") is not None


@pytest.mark.parametrize(
    ("name", "provider", "label"),
    [
        ("us-east-1", None, "aws:us-east-1→US-VA"),
        ("aws:us-east-1", None, "aws:us-east-1→US-VA"),
        ("Amazon:eu-west-3", None, "aws:eu-west-3→FR"),
        ("eu-north-1", "aws", "aws:eu-north-1→SE-SE3"),
        ("europe-west9", None, "gcp:europe-west9→FR"),
        ("us-central1", "GCP", "gcp:us-central1→US-IA"),
        ("westeurope", None, "azure:westeurope→NL"),
        ("West Europe", "azure", "azure:westeurope→NL"),
        ("NorthEurope", None, "azure:northeurope→IE"),
        ("me-central1", "gcp", "gcp:me-central1→QA"),
    ],
)
def test_cloud_region_lookup(name: str, provider: str | None, label: str) -> None:
    assert tables.cloud_region_intensity(name, provider).zone == label


def test_cloud_region_sources() -> None:
    gcp = tables.cloud_region_intensity("europe-west9")
    assert (gcp.value, gcp.source) == (
        tables.country_intensity("FR").value,
        tables.country_intensity("FR").source,
    )
    assert tables.cloud_region_intensity("us-east2", "gcp").zone == "gcp:us-east2→US-GA"
    assert tables.cloud_region_intensity("us-central2", "gcp").zone == "gcp:us-central2→US-OK"
    aws = tables.cloud_region_intensity("us-east-1")
    assert aws.value == tables.region_intensity("US", "VA").value
    assert aws.source == tables.region_intensity("US", "VA").source
    azure = tables.cloud_region_intensity("westeurope")
    assert azure.value == tables.country_intensity("NL").value


def test_cloud_region_unknown() -> None:
    assert tables.find_cloud_region("mars-north-1") is None
    assert tables.find_cloud_region("us-east-1", "gcp") is None
    assert tables.split_provider("weird:us-east-1") == (None, "weird:us-east-1")
    with pytest.raises(KeyError):
        tables.cloud_region_intensity("mars-north-1")


def test_world_average() -> None:
    world = tables.world_average()
    assert world.zone == "WORLD"
    assert world.source == f"world-average@{tables.world_average_year()}/lifecycle"
    assert 400 < world.value < 550
    assert tables.world_average_year().isdigit()


def test_lookup_region_and_fallback_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")
    assert tables.lookup("US", "CA").zone == "US-CA"
    assert tables.lookup("FR").zone == "FR"
    assert tables.lookup("FR", "  ").zone == "FR"
    assert not caplog.records
    ci = tables.lookup("FR", "Atlantis")
    assert ci == tables.country_intensity("FR")
    assert len(caplog.records) == 1
    assert "Atlantis" in caplog.records[0].getMessage()


def test_lookup_cloud_region_with_country(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")
    assert tables.lookup("DE", "eu-central-1").zone == "aws:eu-central-1→DE"
    assert not caplog.records
    assert tables.lookup("FR", "eu-central-1").zone == "aws:eu-central-1→DE"
    assert len(caplog.records) == 1


def test_lookup_unknown_table() -> None:
    with pytest.raises(ConfigError) as info:
        tables.lookup("FR", table="nope")
    assert "OTEL_PYTHON_HF_ECO2AI_CARBON_TABLE" in str(info.value)


def test_no_table_read_at_import() -> None:
    code = (
        "import hf_eco2ai.carbon.tables as t, hf_eco2ai.carbon.countries as c\n"
        "import hf_eco2ai.carbon.location, hf_eco2ai.carbon.providers\n"
        "assert t._countries.cache_info().currsize == 0\n"
        "assert t._cloud.cache_info().currsize == 0\n"
        "assert c._index.cache_info().currsize == 0\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


# --------------------------------------------------------------------------- eco2ai table
ECO2AI_CSV = """\
country,region,alternative_name,alpha_2_code,alpha_3_code,un_code,"Emission intensity, kg/MWh"
France,Whole country,N/A,FR,FRA,250,51.282
Namibia,Whole country,N/A,,NAM,516,48.077
United States of America,Whole country,N/A,US,USA,840,369.571
United States of America,California,"CA,California,Kalifornien",US,USA,840,175.62
United States of America,Texas,"TX,Texas",US,USA,840,414.32
Russian Federation,Whole country,N/A,RU,RUS,643,310.2
Russian Federation,Moscow,"Moskva,Moscow City",RU,RUS,643,380.0
Broken,Whole country,N/A,XX,XXX,0,1.0
France,Bad row,N/A,FR,FRA,250,not-a-number
France,Absurd,N/A,FR,FRA,250,99999
"""


@pytest.fixture
def fake_eco2ai(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in eco2ai whose import raises: the table must be read without importing it."""
    pkg = tmp_path / "eco2ai"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('eco2ai must not be imported')\n")
    (pkg / "data" / "carbon_index.csv").write_text(ECO2AI_CSV, encoding="utf-8")
    dist = tmp_path / "eco2ai-0.3.10.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: eco2ai\nVersion: 0.3.10\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    tables._eco2ai_rows.cache_clear()
    return pkg / "data" / "carbon_index.csv"


def test_eco2ai_table(fake_eco2ai: Path) -> None:
    assert tables.eco2ai_table_path() == fake_eco2ai
    tables.ensure_table_available("eco2ai")
    fr = tables.country_intensity("FRA", table="eco2ai")
    assert fr == CarbonIntensity(51.282, zone="FR", source="table:eco2ai@0.3.10/unstated")
    assert tables.country_intensity("NA", table="eco2ai").value == 48.077
    assert tables.region_intensity("US", "CA", table="eco2ai").zone == "US-CA"
    assert tables.region_intensity("US", "california", table="eco2ai").value == 175.62
    assert tables.region_intensity("US", "tx", table="eco2ai").value == 414.32
    moscow = tables.region_intensity("RU", "Moskva", table="eco2ai")
    assert moscow.zone == "RU-Moscow"
    with pytest.raises(KeyError):
        tables.region_intensity("US", "Atlantis", table="eco2ai")
    with pytest.raises(KeyError):
        tables.country_intensity("DE", table="eco2ai")
    assert "eco2ai" not in sys.modules


def test_eco2ai_lookup_fallbacks(fake_eco2ai: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")
    de = tables.lookup("DE", table="eco2ai")
    assert de == tables.country_intensity("DE")
    assert len(caplog.records) == 1
    caplog.clear()
    us = tables.lookup("US", "Atlantis", table="eco2ai")
    assert us.source == "table:eco2ai@0.3.10/unstated"
    assert len(caplog.records) == 1
    caplog.clear()
    de_region = tables.lookup("DE", "Bavaria", table="eco2ai")
    assert de_region == tables.country_intensity("DE")
    assert len(caplog.records) == 1


def test_eco2ai_version_unknown(fake_eco2ai: Path) -> None:
    (fake_eco2ai.parents[2] / "eco2ai-0.3.10.dist-info" / "METADATA").unlink()
    (fake_eco2ai.parents[2] / "eco2ai-0.3.10.dist-info").rmdir()
    importlib.invalidate_caches()
    assert tables.country_intensity("FR", table="eco2ai").source == "table:eco2ai@unknown/unstated"


def test_eco2ai_missing_is_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "eco2ai_table_path", lambda: None)
    with pytest.raises(ConfigError) as info:
        tables.ensure_table_available("eco2ai")
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "OTEL_PYTHON_HF_ECO2AI_CARBON_TABLE" in message
    assert "carbon_table" in message
    assert "hf-eco2ai[eco2ai]" in message
    with pytest.raises(ConfigError):
        tables.country_intensity("FR", table="eco2ai")


def test_eco2ai_table_path_edge_cases(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def raising(name: str) -> None:
        raise ValueError(name)

    monkeypatch.setattr(importlib.util, "find_spec", raising)
    assert tables.eco2ai_table_path() is None

    class Spec:
        submodule_search_locations = [str(tmp_path)]

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: Spec())
    assert tables.eco2ai_table_path() is None  # package without the data file
