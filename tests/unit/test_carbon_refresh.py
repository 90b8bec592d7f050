from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.maintainer_tools import TOOLS, load_tool

rt = load_tool("refresh_tables")

ISO = {
    "3166-1": [
        {"alpha_2": "FR", "alpha_3": "FRA", "numeric": "250", "name": "France"},
        {"alpha_2": "DE", "alpha_3": "DEU", "numeric": "276", "name": "Germany"},
        {"alpha_2": "JE", "alpha_3": "JEY", "numeric": "832", "name": "Jersey"},
        {"alpha_2": "AQ", "alpha_3": "ATA", "numeric": "010", "name": "Antarctica"},
        {"alpha_2": "BV", "alpha_3": "BVT", "numeric": "074", "name": "Bouvet Island"},
        {"alpha_2": "US", "alpha_3": "USA", "numeric": "840", "name": "United States"},
        {"alpha_2": "CA", "alpha_3": "CAN", "numeric": "124", "name": "Canada"},
        {"alpha_2": "SE", "alpha_3": "SWE", "numeric": "752", "name": "Sweden"},
        {
            "alpha_2": "QA",
            "alpha_3": "QAT",
            "numeric": "634",
            "name": "Qatar, State of",
            "common_name": "Qatar",
        },
    ]
}
ISO2 = {"3166-2": [{"code": "US-CA", "name": "California"}, {"code": "CA-MB", "name": "Manitoba"}]}
OWID = {
    "FRA": {"carbon_intensity": 50.0, "year": 2023, "total_TWh": 100.0},
    "DEU": {"carbon_intensity": 350.0, "year": 2022, "total_TWh": 300.0},
    "USA": {"carbon_intensity": 370.0, "year": 2023, "total_TWh": 0},
    "CAN": {"carbon_intensity": 170.0, "year": 2023},
    "SWE": {"carbon_intensity": 40.0, "year": 2023, "total_TWh": "n/a"},
    "QAT": {"carbon_intensity": 600.0, "year": 2023, "total_TWh": 10.0},
}
GA = (
    "index,,,,in gCO2e/kWh,,banner,\n"
    "location,continentName,countryName,regionName,carbonIntensity,Type,source,comments\n"
    "WORLD,World,Any,Any,475,World,iea,Data from 2019\n"
    "US-CA,North America,USA,Calif,216.43,Region,carbonfootprint (data from 2020 published),\n"
    "CA-MT,North America,Canada,Manitoba,1.3,Region,NIR,Data from 2019\n"
    "CN-HK,Asia,China,Hong Kong,710,Region,x (data from 2020),\n"
    "FR,Europe,France,Any,51.28,Country,AIB (data from 2020),\n"
)
GOOGLE_HEADER = "Google Cloud Region,Location,Google CFE,Grid carbon intensity (gCO2eq / kWh)\n"
GOOGLE_2023 = GOOGLE_HEADER + "europe-west9,Paris,0.95,34\n"
GOOGLE_2024 = GOOGLE_HEADER + "europe-west9,Paris,0.96,16.30\nme-cenrtal1,Doha,0.01,366\n"
ECO2AI = (
    "country,region,alternative_name,alpha_2_code,alpha_3_code,un_code,"
    '"Emission intensity, kg/MWh"\n'
    "Antarctica,Whole country,N/A,AQ,ATA,10,700\n"
    "France,Whole country,N/A,FR,FRA,250,51\n"
    "France,Paris,N/A,FR,FRA,250,51\n"
)
LOCATIONS = (
    "provider,region,zone,location,reference\n"
    "gcp,europe-west9,FR,Paris,ref\n"
    "gcp,me-central1,QA,Doha,ref\n"
    "aws,eu-west-3,FR,Paris,ref\n"
    "aws,us-west-1,US-CA,N. California,ref\n"
    "aws,eu-north-1,SE-SE3,Stockholm,ref\n"
    "azure,canadacentral,CA-ON,Toronto,ref\n"
)


def _write_sources(src: Path) -> Path:
    src.mkdir(parents=True, exist_ok=True)
    (src / "iso_3166-1.json").write_text(json.dumps(ISO))
    (src / "iso_3166-2.json").write_text(json.dumps(ISO2))
    (src / "global_energy_mix.json").write_text(json.dumps(OWID))
    (src / "CI_aggregated.csv").write_text(GA)
    (src / "google-cloud-2023.csv").write_text(GOOGLE_2023, encoding="utf-8")
    (src / "google-cloud-2024.csv").write_text(GOOGLE_2024, encoding="utf-8")
    (src / "carbon_index.csv").write_text(ECO2AI)
    (src / "cloud_region_locations.csv").write_text(LOCATIONS)
    return src


def _read(path: Path) -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    key = next(iter(rows[0]))
    if key == "provider":
        return {f"{r['provider']}:{r['region']}": r for r in rows}
    return {r[key]: r for r in rows}


def test_refresh_from_synthetic_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _write_sources(tmp_path / "src")
    out = tmp_path / "out"
    assert rt.main(["--from", str(src), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out

    countries = _read(out / "countries.csv")
    assert countries["FR"]["intensity_g_per_kwh"] == "50"
    assert countries["FR"]["source"] == "owid"
    assert countries["FR"]["year"] == "2023"
    assert (countries["FR"]["basis"], countries["FR"]["licence"]) == ("lifecycle", "CC-BY-4.0")
    assert countries["DE"]["year"] == "2022"
    assert countries["QA"]["name"] == "Qatar"
    # no own figure: Jersey takes France's (interconnected), Antarctica eco2ai's, Bouvet the world's
    assert countries["JE"]["intensity_g_per_kwh"] == "50"
    assert countries["JE"]["note"].startswith("no own figure: grid of FR")
    assert countries["AQ"]["source"] == "eco2ai"
    assert countries["AQ"]["basis"] == "unstated"
    world = (50 * 100 + 350 * 300 + 600 * 10) / 410
    assert float(countries["WORLD"]["intensity_g_per_kwh"]) == pytest.approx(world, abs=1e-3)
    assert countries["WORLD"]["year"] == "2023"
    assert countries["BV"]["source"] == "world-average"
    assert countries["BV"]["intensity_g_per_kwh"] == countries["WORLD"]["intensity_g_per_kwh"]

    zones = _read(out / "zones.csv")
    assert set(zones) == {"US-CA", "CA-MB", "SE-SE1", "SE-SE2", "SE-SE3", "SE-SE4"}
    assert zones["US-CA"]["name"] == "California"
    assert zones["US-CA"]["year"] == "2020"
    assert zones["US-CA"]["basis"] == "direct"
    assert "direct basis" in zones["US-CA"]["note"]
    assert zones["CA-MB"]["year"] == "2019"
    # bidding zones: the national figure, on the national basis, said in the note
    sweden = {k: countries["SE"][k] for k in ("intensity_g_per_kwh", "year", "source", "basis")}
    assert {k: zones["SE-SE3"][k] for k in sweden} == sweden
    assert zones["SE-SE3"]["note"].endswith("figure of SE")

    cloud = _read(out / "cloud_regions.csv")
    # one figure per grid: GCP Paris has France's figure, like AWS Paris
    assert cloud["gcp:europe-west9"]["intensity_g_per_kwh"] == "50"
    assert cloud["gcp:europe-west9"]["source"] == "owid"
    # Google's own figure is kept for reference, from the newest year supplied
    assert cloud["gcp:europe-west9"]["published_g_per_kwh"] == "16.3"
    assert cloud["gcp:europe-west9"]["published_year"] == "2024"
    assert cloud["gcp:europe-west9"]["published_basis"] == "direct"
    assert cloud["gcp:me-central1"]["published_g_per_kwh"] == "366"  # upstream typo fixed
    assert cloud["aws:eu-west-3"]["intensity_g_per_kwh"] == "50"
    assert cloud["aws:eu-west-3"]["published_g_per_kwh"] == ""
    assert cloud["aws:us-west-1"]["source"] == "green-algorithms"
    assert "direct basis" in cloud["aws:us-west-1"]["note"]
    assert cloud["aws:eu-north-1"]["intensity_g_per_kwh"] == "40"  # SE3: Sweden's figure
    assert cloud["aws:eu-north-1"]["note"] == "grid of SE-SE3"
    assert cloud["azure:canadacentral"]["intensity_g_per_kwh"] == "170"  # no CA-ON: country

    iso = _read(out / "iso3166.csv")
    assert iso["FR"]["alpha3"] == "FRA"


GRAPHER = (
    "Entity,Code,Year,Carbon intensity of electricity - gCO2/kWh\n"
    "Africa (Ember),,2024,542.4\n"
    "France,FRA,2023,56.0\n"
    "France,FRA,2024,44.18\n"
    "Kosovo,OWID_KOS,2024,700\n"
    "World,OWID_WRL,2023,484.4\n"
    "World,OWID_WRL,2024,473.0\n"
)


def test_refresh_from_owid_grapher_download(tmp_path: Path) -> None:
    src = _write_sources(tmp_path / "src")
    (src / rt.GRAPHER_FILE).write_text(GRAPHER, encoding="utf-8")
    tables = rt.build_tables(src, tmp_path / "nothing")
    countries = {r["alpha2"]: r for r in tables.countries}
    # the grapher file wins for the countries it has, at their latest year ...
    assert (countries["FR"]["intensity_g_per_kwh"], countries["FR"]["year"]) == ("44.18", "2024")
    assert countries["JE"]["intensity_g_per_kwh"] == "44.18"
    # ... CodeCarbon's copy fills the others, and OWID's World row is the world average
    assert countries["DE"]["intensity_g_per_kwh"] == "350"
    assert (countries["WORLD"]["intensity_g_per_kwh"], countries["WORLD"]["year"]) == (
        "473",
        "2024",
    )
    assert countries["WORLD"]["note"] == "Our World in Data's World figure"
    assert countries["BV"]["intensity_g_per_kwh"] == "473"
    # without CodeCarbon's file the grapher file alone is enough
    (src / "global_energy_mix.json").unlink()
    alone = {r["alpha2"]: r for r in rt.build_tables(src, tmp_path / "nothing").countries}
    assert alone["FR"]["source"] == "owid"
    assert alone["DE"]["source"] == "world-average"  # no figure without CodeCarbon's copy


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("Entity,Code,Year\nFrance,FRA,2024\n", "expected columns"),
        ("Entity,Code,Year,v\nFrance,FRA,2024,44\n", "World"),
        ("Entity,Code,Year,v\nWorld,OWID_WRL,2024,473\n", "country rows"),
        ("Entity,Code,Year,v\nFrance,FRA,2024,-5\nWorld,OWID_WRL,2024,473\n", "outside"),
        ("Entity,Code,Year,v\nFrance,FRA,20x4,44\nWorld,OWID_WRL,2024,473\n", "year"),
    ],
)
def test_malformed_grapher_download(tmp_path: Path, content: str, message: str) -> None:
    src = _write_sources(tmp_path / "src")
    (src / rt.GRAPHER_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(rt.SourceError, match=message):
        rt.build_tables(src, tmp_path / "nothing")


def test_absent_optional_sources_keep_current_rows(tmp_path: Path) -> None:
    src = _write_sources(tmp_path / "src")
    out = tmp_path / "out"
    assert rt.main(["--from", str(src), "--out", str(out)]) == 0
    for name in (
        "CI_aggregated.csv",
        "google-cloud-2023.csv",
        "google-cloud-2024.csv",
        "iso_3166-1.json",
        "iso_3166-2.json",
        "cloud_region_locations.csv",
        "carbon_index.csv",
    ):
        (src / name).unlink()
    assert rt.main(["--from", str(src), "--out", str(out)]) == 0
    zones = _read(out / "zones.csv")
    assert set(zones) == {"US-CA", "CA-MB", "SE-SE1", "SE-SE2", "SE-SE3", "SE-SE4"}
    assert zones["US-CA"]["note"].count("direct basis") == 1  # kept rows: note not repeated
    cloud = _read(out / "cloud_regions.csv")
    assert cloud["gcp:europe-west9"]["published_g_per_kwh"] == "16.3"
    assert len(_read(out / "iso3166.csv")) == len(ISO["3166-1"])
    assert _read(out / "countries.csv")["AQ"]["source"] == "world-average"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("global_energy_mix.json", "{not json", "cannot read JSON"),
        ("global_energy_mix.json", "[]", "expected an object"),
        ("global_energy_mix.json", '{"FRA": {"year": 2023}}', "needs 'carbon_intensity'"),
        ("global_energy_mix.json", '{"FRA": {"carbon_intensity": 5000, "year": 2023}}', "outside"),
        ("global_energy_mix.json", '{"FRA": {"carbon_intensity": "x", "year": 2023}}', "number"),
        ("global_energy_mix.json", '{"FRA": {"carbon_intensity": null, "year": 2023}}', "number"),
        ("global_energy_mix.json", '{"FRA": {"carbon_intensity": 5, "year": "x"}}', "year"),
        ("global_energy_mix.json", '{"FRA": {"carbon_intensity": 5, "year": 1800}}', "year"),
        ("global_energy_mix.json", '{"FRA": {"carbon_intensity": 5, "year": 2023}}', "world"),
        ("iso_3166-1.json", '{"3166-1": []}', "'3166-1' list"),
        ("iso_3166-1.json", '{"3166-1": [1]}', "entries must be objects"),
        ("iso_3166-1.json", '{"3166-1": [{"alpha_2": "FR"}]}', "entry without"),
        (
            "iso_3166-1.json",
            '{"3166-1": [{"alpha_2": "F", "alpha_3": "FRA", "numeric": "1", "name": "x"}]}',
            "bad codes",
        ),
        ("iso_3166-2.json", "[]", "'3166-2' list"),
        ("CI_aggregated.csv", "banner\nlocation,Type,carbonIntensity,source\n", "no US/CA/AU"),
        (
            "CI_aggregated.csv",
            "banner\nlocation,Type,carbonIntensity,source\nUS-CA,Region,200,undated\n",
            "no 'data from YYYY'",
        ),
        ("google-cloud-2024.csv", GOOGLE_HEADER + "europe-west9,Paris,1,x\n", "number"),
        ("google-cloud-2024.csv", GOOGLE_HEADER, "no regions"),
        ("google-cloud-2024.csv", "Region,x\neurope-west9,1\n", "'Google Cloud Region'"),
        ("cloud_region_locations.csv", "provider,region\naws,x\n", "needs columns"),
        (
            "cloud_region_locations.csv",
            "provider,region,zone,location,reference\naws,x,ZZ,y,z\n",
            "zone 'ZZ'",
        ),
        ("google-cloud-2024.csv", b"\xff\xfe\x00bad", "cannot read CSV"),
    ],
)
def test_malformed_sources(tmp_path: Path, name: str, content: str | bytes, message: str) -> None:
    src = _write_sources(tmp_path / "src")
    if isinstance(content, bytes):
        (src / name).write_bytes(content)
    else:
        (src / name).write_text(content)
    with pytest.raises(rt.SourceError, match=message):
        rt.build_tables(src, tmp_path / "nothing")


def test_missing_required_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _write_sources(tmp_path / "src")
    (src / "global_energy_mix.json").unlink()
    assert rt.main(["--from", str(src), "--out", str(tmp_path / "out")]) == 1
    assert "global_energy_mix.json" in capsys.readouterr().err


def test_missing_iso_without_current_tables(tmp_path: Path) -> None:
    src = _write_sources(tmp_path / "src")
    (src / "iso_3166-1.json").unlink()
    with pytest.raises(rt.SourceError, match=r"iso3166\.csv"):
        rt.build_tables(src, tmp_path / "nothing")


def test_runs_as_a_script(tmp_path: Path) -> None:
    src = _write_sources(tmp_path / "src")
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            str(TOOLS / "refresh_tables.py"),
            "--from",
            str(src),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "countries.csv").exists()


def test_shipped_tables_are_consistent_with_the_builder_columns() -> None:
    for name, columns in (
        ("countries.csv", rt.COUNTRY_COLUMNS),
        ("zones.csv", rt.ZONE_COLUMNS),
        ("cloud_regions.csv", rt.CLOUD_COLUMNS),
        ("iso3166.csv", rt.ISO_COLUMNS),
        ("cloud_region_locations.csv", rt.LOCATION_COLUMNS),
    ):
        header = (rt.DATA_DIR / name).read_text(encoding="utf-8").splitlines()[0]
        assert header == ",".join(columns)


# --------------------------------------------------------------------------- eGRID and NGA
# eGRID's state sheet as EPA's workbook lays it out: long names, then the short codes.
EGRID_2022 = (
    "Data Year,State abbreviation,State annual CO2 equivalent total output emission rate (lb/MWh)\n"
    "YEAR,PSTATABB,STC2ERTA\n"
    "2022,CA,457.485\n"
    "2022,WA,185.965\n"
    "2022,PR,1599.922\n"
)
NGA = (
    "zone,kg_co2e_per_kwh,edition,note\n"
    "AU-NSW,0.64,2025,row New South Wales and Australian Capital Territory\n"
    "AU-WA-NWIS,0.61,2024,\n"
)


def test_egrid_and_nga_replace_older_rows(tmp_path: Path) -> None:
    src = _write_sources(tmp_path / "src")  # Green Algorithms: US-CA 216.43 for 2020
    (src / "egrid-state-2022.csv").write_text(EGRID_2022, encoding="utf-8")
    (src / "egrid-state-2020.csv").write_text("YEAR,PSTATABB,STC2ERTA\n2020,CA,1\n")
    (src / rt.NGA_FILE).write_text(NGA, encoding="utf-8")
    zones = {r["zone"]: r for r in rt.build_tables(src, tmp_path / "nothing").zones}
    # the newest eGRID file, lb/MWh converted with the exact pound
    ca = zones["US-CA"]
    assert (ca["source"], ca["year"], ca["basis"]) == ("egrid", "2022", "direct")
    assert float(ca["intensity_g_per_kwh"]) == pytest.approx(457.485 * 0.45359237, abs=5e-4)
    assert ca["licence"] == "public-domain"
    assert ca["name"] == "California"
    assert "(STC2ERTA) 457.485 lb/MWh" in ca["note"]
    assert ca["note"].startswith("state figure on a direct basis")
    assert zones["US-WA"]["name"] == "WA"  # no ISO name and no current row: the code
    assert "US-PR" not in zones  # Puerto Rico is a country of its own
    assert zones["CA-MB"]["source"] == "green-algorithms"  # nothing newer for Canada
    nsw = zones["AU-NSW"]
    assert (nsw["intensity_g_per_kwh"], nsw["year"], nsw["source"]) == ("640", "2025", "nga")
    assert nsw["licence"] == "CC-BY-4.0"
    assert "Factors 2025, Table 1, scope 2: 0.64 kg/kWh; row New South Wales" in nsw["note"]
    assert zones["AU-WA-NWIS"]["year"] == "2024"
    assert zones["AU-WA-NWIS"]["note"].endswith("scope 2: 0.61 kg/kWh")


def test_an_older_source_does_not_undo_a_newer_row(tmp_path: Path) -> None:
    src = _write_sources(tmp_path / "src")
    (src / "egrid-state-2022.csv").write_text(EGRID_2022, encoding="utf-8")
    out = tmp_path / "out"
    assert rt.main(["--from", str(src), "--out", str(out)]) == 0
    (src / "egrid-state-2022.csv").unlink()  # Green Algorithms' 2020 figure is still supplied
    assert rt.main(["--from", str(src), "--out", str(out)]) == 0
    zones = _read(out / "zones.csv")
    assert (zones["US-CA"]["source"], zones["US-CA"]["year"]) == ("egrid", "2022")
    assert zones["US-CA"]["note"].count("direct basis") == 1
    # with no national source at all, the country table in force is kept as it is
    before = (out / "countries.csv").read_text(encoding="utf-8")
    (src / "global_energy_mix.json").unlink()
    assert rt.main(["--from", str(src), "--out", str(out)]) == 0
    assert (out / "countries.csv").read_text(encoding="utf-8") == before
    assert _read(out / "zones.csv")["SE-SE3"]["intensity_g_per_kwh"] == "40"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("egrid-state-2022.csv", "YEAR,PSTATABB\n2022,CA\n", "short-code header"),
        ("egrid-state-2022.csv", "PSTATABB,STC2ERTA\nCA,n/a\n", "not a number"),
        ("egrid-state-2022.csv", "YEAR,PSTATABB,STC2ERTA\n2021,CA,400\n", "not 2022"),
        ("egrid-state-2022.csv", "PSTATABB,STC2ERTA\nCA,9000\n", "outside"),
        ("egrid-state-2022.csv", "PSTATABB,STC2ERTA\nPR,900\n", "no state rows"),
        ("egrid-state-1800.csv", "PSTATABB,STC2ERTA\nCA,400\n", "year"),
        ("egrid-state-2022.csv", b"\xff\xfe\x00bad", "cannot read CSV"),
        (rt.NGA_FILE, "zone,kg_co2e_per_kwh,edition\nNSW,0.6,2025\n", "AU-"),
        (rt.NGA_FILE, "zone,kg_co2e_per_kwh,edition\nAU-NSW,x,2025\n", "not a number"),
        (rt.NGA_FILE, "zone,kg_co2e_per_kwh,edition\nAU-NSW,0.6,20x5\n", "year"),
        (rt.NGA_FILE, "zone,kg_co2e_per_kwh,edition\nAU-NSW,3,2025\n", "outside"),
        (rt.NGA_FILE, "zone,kg_co2e_per_kwh,edition\n", "no rows"),
    ],
)
def test_malformed_egrid_and_nga(
    tmp_path: Path, name: str, content: str | bytes, message: str
) -> None:
    src = _write_sources(tmp_path / "src")
    if isinstance(content, bytes):
        (src / name).write_bytes(content)
    else:
        (src / name).write_text(content)
    with pytest.raises(rt.SourceError, match=message):
        rt.build_tables(src, tmp_path / "nothing")
