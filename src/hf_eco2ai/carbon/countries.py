"""ISO 3166-1 countries: validation and normalisation of country codes.

The list ships as ``data/iso3166.csv`` (all 249 ISO 3166-1 entries) and is read lazily, once.

Example:
    >>> normalize_country(" fra ")
    'FR'
    >>> country_name("DE")
    'Germany'
"""

from __future__ import annotations

import csv
import functools
import io
from dataclasses import dataclass
from importlib import resources

#: Codes that are not ISO alpha-2/alpha-3 but are commonly used for a country.
#: ``UK`` is exceptionally reserved by ISO 3166 for the United Kingdom.
ALIASES = {"UK": "GB"}


@dataclass(frozen=True, slots=True)
class Country:
    """One ISO 3166-1 entry."""

    alpha2: str
    alpha3: str
    numeric: str
    name: str


def read_data_text(name: str) -> str:
    """The text of the packaged data file ``data/<name>``.

    >>> read_data_text("iso3166.csv").splitlines()[0]
    'alpha2,alpha3,numeric,name'
    """
    return (
        resources.files("hf_eco2ai.carbon")
        .joinpath("data")
        .joinpath(name)
        .read_text(encoding="utf-8")
    )


@functools.lru_cache(maxsize=1)
def _index() -> tuple[tuple[Country, ...], dict[str, Country]]:
    reader = csv.DictReader(io.StringIO(read_data_text("iso3166.csv")))
    countries = tuple(Country(r["alpha2"], r["alpha3"], r["numeric"], r["name"]) for r in reader)
    index: dict[str, Country] = {}
    for country in countries:
        index[country.alpha2] = country
        index[country.alpha3] = country
    for alias, target in ALIASES.items():
        index.setdefault(alias, index[target])
    return countries, index


def all_countries() -> tuple[Country, ...]:
    """Every ISO 3166-1 country, sorted by alpha-2 code.

    >>> len(all_countries())
    249
    """
    return _index()[0]


def get_country(code: str) -> Country:
    """The :class:`Country` for an alpha-2 or alpha-3 code (any case, surrounding spaces).

    Raises:
        KeyError: ``code`` is not an ISO 3166-1 alpha-2 or alpha-3 code.

    >>> get_country("pol").alpha2
    'PL'
    """
    if not isinstance(code, str):
        raise KeyError(code)
    key = code.strip().upper()
    try:
        return _index()[1][key]
    except KeyError:
        raise KeyError(code) from None


def normalize_country(code: str) -> str:
    """Normalise an ISO 3166-1 alpha-2 or alpha-3 code to upper-case alpha-2.

    Raises:
        KeyError: ``code`` is not an ISO 3166-1 country code.

    >>> normalize_country("usa"), normalize_country("Fr")
    ('US', 'FR')
    >>> normalize_country("XX")
    Traceback (most recent call last):
    ...
    KeyError: 'XX'
    """
    return get_country(code).alpha2


def country_name(code: str) -> str:
    """The English short name of a country.

    >>> country_name("POL")
    'Poland'
    """
    return get_country(code).name
