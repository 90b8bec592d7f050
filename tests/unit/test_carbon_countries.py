from __future__ import annotations

import pytest

from hf_eco2ai.carbon.countries import (
    all_countries,
    country_name,
    get_country,
    normalize_country,
    read_data_text,
)
from hf_eco2ai.config import CarbonConfig, ConfigError


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("FR", "FR"),
        ("fr", "FR"),
        (" fra ", "FR"),
        ("FRA", "FR"),
        ("usa", "US"),
        ("Pol", "PL"),
        ("GBR", "GB"),
        ("uk", "GB"),
        ("ax", "AX"),
        ("ATA", "AQ"),
        ("nam", "NA"),
    ],
)
def test_normalize_country(code: str, expected: str) -> None:
    assert normalize_country(code) == expected


@pytest.mark.parametrize("code", ["", "X", "XX", "XXX", "France", "F R", "FRAN", "EU", "WORLD"])
def test_normalize_country_unknown(code: str) -> None:
    with pytest.raises(KeyError):
        normalize_country(code)


def test_non_string_is_key_error() -> None:
    with pytest.raises(KeyError):
        get_country(33)  # type: ignore[arg-type]


def test_all_iso_countries() -> None:
    countries = all_countries()
    assert len(countries) == 249
    assert len({c.alpha2 for c in countries}) == 249
    assert len({c.alpha3 for c in countries}) == 249
    assert all(len(c.alpha2) == 2 and len(c.alpha3) == 3 and c.name for c in countries)
    assert [c.alpha2 for c in countries] == sorted(c.alpha2 for c in countries)


def test_names_and_codes() -> None:
    assert country_name("de") == "Germany"
    assert get_country("TWN").alpha2 == "TW"
    with pytest.raises(KeyError):
        get_country("250")  # numeric codes are not accepted
    assert read_data_text("iso3166.csv").startswith("alpha2,alpha3,numeric,name")


def test_config_country_alpha3() -> None:
    assert CarbonConfig(country="fra").country == "FR"
    assert CarbonConfig(country=" pol ").country == "PL"
    assert CarbonConfig.from_env({"OTEL_PYTHON_HF_ECO2AI_COUNTRY": "deu"}).country == "DE"


@pytest.mark.parametrize("value", ["XX", "France", "EUR", "250"])
def test_config_country_unknown(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        CarbonConfig(country=value)
    assert "OTEL_PYTHON_HF_ECO2AI_COUNTRY" in str(info.value)
