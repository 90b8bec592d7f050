"""The kinds of ``CarbonConfig`` fields: how a value is checked, read from the environment and
described.

A field is declared once, in :class:`hf_eco2ai.config.CarbonConfig`, with :func:`setting`: its
default, its kind (bounds or choices included) and its help text. From that one declaration come
the validation, the parsing of ``OTEL_PYTHON_HF_ECO2AI_<FIELD>``, the "allowed" text of errors and
docs, the ``environment_variables`` module and the configuration page (``tools/docgen.py``).

Example:
    >>> kind = Number(1.0, 3.0)
    >>> kind.allowed()
    'a number between 1 and 3'
    >>> kind.check("pue", kind.parse("pue", " 1.5 "))
    1.5
    >>> kind.check("pue", 5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hf_eco2ai.errors.ConfigError: hf-eco2ai: invalid value for 'pue' ...; allowed: a number between 1 and 3
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, TypeVar

from hf_eco2ai.errors import ConfigError, env_var_name
from hf_eco2ai.output_location import absolute_path, length_problem

_T = TypeVar("_T")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
REPLACEMENT = "\ufffd"
logger = logging.getLogger("hf_eco2ai.config")


class Kind(ABC):
    """How one kind of setting is checked, parsed from its environment variable and described."""

    optional: bool = False
    """``None`` is a valid value (meaning "unset"); an empty environment variable is ``None``."""

    @abstractmethod
    def allowed(self) -> str:
        """What is allowed, as errors and the docs say it."""

    @abstractmethod
    def check(self, name: str, value: object) -> Any:
        """``value`` checked and normalised; raises :class:`ConfigError` naming ``name``."""

    def parse(self, name: str, raw: str) -> Any:
        """The Python value of the environment text ``raw`` (before :meth:`check`)."""
        return raw.strip()

    def _refuse(self, name: str, value: object, allowed: str | None = None) -> ConfigError:
        return ConfigError(name, value, allowed or self.allowed())


@dataclass(frozen=True)
class Number(Kind):
    """A finite number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``); ``integer`` for ints."""

    lo: float
    hi: float
    integer: bool = False
    optional: bool = False
    lo_open: bool = False

    def allowed(self) -> str:
        kind = "an integer" if self.integer else "a number"
        lo, hi = (str(int(b)) if self.integer else f"{b:g}" for b in (self.lo, self.hi))
        if self.lo_open:
            return f"{kind} > {lo}, up to {hi}"
        return f"{kind} between {lo} and {hi}"

    def parse(self, name: str, raw: str) -> Any:
        text = raw.strip()
        try:
            return int(text) if self.integer else float(text)
        except ValueError:
            raise self._refuse(name, raw) from None

    def check(self, name: str, value: object) -> Any:
        if value is None and self.optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._refuse(name, value)
        number: float | int = value
        if self.integer and not isinstance(number, int):
            if not math.isfinite(number) or not number.is_integer():
                raise self._refuse(name, value)
            number = int(number)
        # an int is compared exactly (float() of a 400-digit int would overflow)
        if isinstance(number, float) and not math.isfinite(number):
            raise self._refuse(name, value)
        below = number <= self.lo if self.lo_open else number < self.lo
        if below or number > self.hi:
            raise self._refuse(name, value)
        return int(number) if self.integer else float(number)


@dataclass(frozen=True)
class Flag(Kind):
    """``True`` or ``False``; the environment also says 1/0, yes/no, on/off."""

    def allowed(self) -> str:
        return "true or false"

    def parse(self, name: str, raw: str) -> Any:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise self._refuse(name, raw, "true or false (1/0, yes/no, on/off)")

    def check(self, name: str, value: object) -> Any:
        if not isinstance(value, bool):
            raise self._refuse(name, value)
        return value


@dataclass(frozen=True)
class Choice(Kind):
    """One of ``choices`` (case and surrounding blanks ignored)."""

    choices: tuple[str, ...]

    def allowed(self) -> str:
        return "one of " + ", ".join(repr(c) for c in self.choices)

    def check(self, name: str, value: object) -> Any:
        if not isinstance(value, str) or value.strip().lower() not in self.choices:
            raise self._refuse(name, value)
        return value.strip().lower()


@dataclass(frozen=True)
class Text(Kind):
    """A string; ``nonempty`` ones are stripped and may not be blank.

    Bytes that are not UTF-8 (``os.environ`` holds them as lone surrogates) are replaced by
    U+FFFD with one warning naming the variable: reports and CSV rows must be writable as
    UTF-8, and a name with a visible mark is better than a refused job.
    """

    nonempty: bool = True
    optional: bool = False

    def allowed(self) -> str:
        return "a non-empty string" if self.nonempty else "a string"

    def check(self, name: str, value: object) -> Any:
        if value is None and self.optional:
            return None
        if not isinstance(value, str):
            raise self._refuse(name, value)
        text = value.strip() if self.nonempty else value
        if self.nonempty and not text:
            raise self._refuse(name, value)
        return _valid_utf8(name, text)


@dataclass(frozen=True)
class Country(Kind):
    """An ISO 3166-1 alpha-2 or alpha-3 code, normalised to alpha-2."""

    optional: bool = True

    def allowed(self) -> str:
        return "an ISO 3166-1 alpha-2 or alpha-3 country code, e.g. 'FR' or 'FRA'"

    def check(self, name: str, value: object) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._refuse(name, value)
        from hf_eco2ai.carbon.countries import normalize_country

        try:
            return normalize_country(value)
        except KeyError:
            raise self._refuse(name, value) from None


@dataclass(frozen=True)
class GpuDevices(Kind):
    """CUDA device indices or GPU UUIDs, as a tuple of strings; the environment separates them
    with commas."""

    optional: bool = True

    def allowed(self) -> str:
        return "CUDA device indices (0, 1, …) or GPU UUIDs ('GPU-…', 'MIG-…'), e.g. '0,1'"

    def parse(self, name: str, raw: str) -> Any:
        return raw.strip().split(",")

    def check(self, name: str, value: object) -> Any:
        if value is None:
            return None
        items: list[object]
        if isinstance(value, (list, tuple)):
            items = list(value)
        elif isinstance(value, (int, str)) and not isinstance(value, bool):
            items = [value]
        else:
            raise self._refuse(name, value)
        out = [self._one(name, value, item) for item in items]
        if not out or len(set(out)) != len(out):
            raise self._refuse(name, value, self.allowed() + " (non-empty, no duplicates)")
        return tuple(out)

    def _one(self, name: str, value: object, item: object) -> str:
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            return str(item)
        if isinstance(item, str):
            text = item.strip()
            if text.isascii() and (
                text.isdigit() or (text.startswith(("GPU-", "MIG-")) and len(text) > 4)
            ):
                return text
        raise self._refuse(name, value)


@dataclass(frozen=True)
class Directory(Kind):
    """A directory path: ``~`` expanded, made absolute once, short enough for the file system.

    Unset (``None``) means "the framework's own output location" (see
    :mod:`hf_eco2ai.output_location`). Whether it can be created and written is checked by
    ``CarbonConfig`` (only when reports are written). Bytes that are not UTF-8 are refused:
    replacing them would name another directory.
    """

    optional: bool = True

    def allowed(self) -> str:
        return "a directory path (created if missing; must be writable)"

    def check(self, name: str, value: object) -> Any:
        if value is None:
            return None
        text = os.fspath(value) if isinstance(value, os.PathLike) else value
        if not isinstance(text, str) or not text.strip():
            raise self._refuse(name, value, "a non-empty directory path")
        if "\x00" in text:
            raise self._refuse(name, value, "a path (no NUL character)")
        if _has_surrogates(text):
            raise self._refuse(name, value, "a path that is valid UTF-8")
        try:
            path = absolute_path(text)
        except ValueError as exc:
            raise self._refuse(name, value, str(exc)) from None
        problem = length_problem(path)
        if problem is not None:
            raise self._refuse(name, value, problem)
        return path


# --------------------------------------------------------------------------- declaring fields
def setting(default: _T, kind: Kind, help_text: str) -> _T:
    """Declare a ``CarbonConfig`` field: its default, its kind and what it means.

    It returns a :func:`dataclasses.field`; typed as the default so that the dataclass keeps
    its field types.
    """
    return dataclasses.field(default=default, metadata={"kind": kind, "help": help_text})


@dataclass(frozen=True)
class FieldSpec:
    """One declared field: name, default, kind and help text."""

    name: str
    default: Any
    kind: Kind
    help: str

    @property
    def env_var(self) -> str:
        """``OTEL_PYTHON_HF_ECO2AI_<NAME>``."""
        return env_var_name(self.name)

    def from_env(self, raw: str) -> Any:
        """The value of the environment text ``raw`` (empty means unset for optional fields)."""
        if raw.strip() == "" and self.kind.optional:
            return None
        return self.kind.parse(self.name, raw)


def specs_of(cls: type) -> tuple[FieldSpec, ...]:
    """The :class:`FieldSpec` of every field of the dataclass ``cls`` declared with
    :func:`setting`, in declaration order."""
    return tuple(
        FieldSpec(f.name, f.default, f.metadata["kind"], f.metadata["help"])
        for f in dataclasses.fields(cls)
        if "kind" in f.metadata
    )


# --------------------------------------------------------------------------- text encoding
def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _valid_utf8(name: str, text: str) -> str:
    """``text`` with each lone surrogate (an undecodable byte from ``os.environ``) replaced by
    U+FFFD, said once in a warning naming the variable."""
    if not _has_surrogates(text):
        return text
    fixed = "".join(REPLACEMENT if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    from hf_eco2ai._logging import warn_once

    warn_once(
        logger,
        f"invalid-utf8:{name}",
        "hf-eco2ai: '%s' (env %s) holds bytes that are not valid UTF-8; each is replaced"
        " by U+FFFD: %r",
        name,
        env_var_name(name),
        fixed,
    )
    return fixed
