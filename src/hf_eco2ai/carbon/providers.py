"""Live grid carbon-intensity providers (opt-in): Electricity Maps and the GB Carbon Intensity API.

A provider implements :class:`~hf_eco2ai.carbon.intensity.IntensityProvider`. The sampler thread
calls :meth:`LiveIntensityProvider.maybe_refresh` each tick; when a refresh is due (at most every
``refresh_interval`` seconds) it starts one short-lived background fetch, so the sampler never
waits on the network. A fetch is time-boxed (``timeout``), size-bounded (``max_bytes``), parsed with
:func:`json.loads` and validated (shape, units, 0-2000 gCO2e/kWh). Any failure keeps the last good
value (or the table ``fallback`` once the last good value is older than ``max_age``), adds one to
:attr:`LiveIntensityProvider.errors` and is logged once per kind of failure.
:meth:`~LiveIntensityProvider.current` is an attribute read.

API tokens are kept in a private attribute and never appear in logs, ``repr``, exceptions or the
:class:`CarbonIntensity` values.

Example:
    >>> from hf_eco2ai.carbon.intensity import CarbonIntensity
    >>> table = CarbonIntensity(237.6, zone="GB", source="table:owid@2023")
    >>> p = UKCarbonIntensityProvider(fallback=table)
    >>> p.current() is table  # nothing fetched yet
    True
    >>> p.close()
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

from hf_eco2ai.carbon.intensity import CarbonIntensity, IntensityProvider

logger = logging.getLogger("hf_eco2ai.carbon")

#: Environment variable holding the Electricity Maps API token.
ELECTRICITYMAPS_TOKEN_ENV = "ELECTRICITYMAPS_API_TOKEN"  # noqa: S105 (a name)  # nosec B105
ELECTRICITYMAPS_URL = "https://api.electricitymaps.com"
UK_CARBON_INTENSITY_URL = "https://api.carbonintensity.org.uk"

DEFAULT_TIMEOUT_S = 3.0
DEFAULT_MAX_BYTES = 64 * 1024
MAX_PLAUSIBLE_G_PER_KWH = 2000.0


class ProviderError(Exception):
    """A fetch failed; ``kind`` is a short, secret-free label (``timeout``, ``http-500``, …)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail


class _Secret:
    """Holds a credential; its ``repr``/``str`` never show it (safe in ``vars()`` dumps)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def reveal(self) -> str:
        """The credential itself, for the request header only."""
        return self._value


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: a redirect would carry an auth header (or a metadata request) to
    another host. Used by the live providers and the cloud-metadata lookup."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: object,
        code: int,
        msg: str,
        headers: object,
        newurl: str,
    ) -> None:
        return None


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} in JSON")


def _number(value: object, what: str) -> float:
    """A plausible intensity in gCO2e/kWh, or :class:`ProviderError` (``schema``/``range``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProviderError("schema", f"{what} is {type(value).__name__}, not a number")
    number = float(value)
    if not math.isfinite(number) or not 0.0 <= number <= MAX_PLAUSIBLE_G_PER_KWH:
        raise ProviderError("range", f"{what}={number!r} outside 0..2000 gCO2e/kWh")
    return number


class LiveIntensityProvider(ABC):
    """Base class of the live providers: scheduling, fetching, validation, fallback, error count.

    Subclasses give :attr:`name`, :meth:`_request` and :meth:`_parse`.

    Args:
        fallback: the table (or world-average) value used until a fetch succeeds, and again
            when the last good value is older than ``max_age``.
        refresh_interval: minimum seconds between two fetches (successful or not).
        timeout: seconds a fetch may take in all (connect, headers, body).
        max_bytes: larger responses are rejected unread.
        base_url: the service root (tests point it at a local server).
        max_age: seconds a fetched value stays in force without a successful refresh
            (default: ``max(3 * refresh_interval, 3600)``).
        background: fetch on a short-lived daemon thread (default) or inline in
            :meth:`maybe_refresh`.
    """

    name: ClassVar[str] = "live"
    default_url: ClassVar[str] = ""

    def __init__(
        self,
        fallback: CarbonIntensity,
        *,
        refresh_interval: float = 900.0,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        base_url: str | None = None,
        max_age: float | None = None,
        background: bool = True,
    ) -> None:
        url = (base_url or self.default_url).rstrip("/")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{type(self).__name__}: base_url must be an http(s) URL")
        if refresh_interval <= 0 or timeout <= 0 or max_bytes <= 0:
            raise ValueError(f"{type(self).__name__}: interval, timeout, max_bytes must be > 0")
        self.fallback = fallback
        self.base_url = url
        self.refresh_interval = float(refresh_interval)
        self.timeout = float(timeout)
        self.max_bytes = int(max_bytes)
        self.max_age = float(max_age) if max_age is not None else max(3 * refresh_interval, 3600.0)
        self.background = background
        #: Failed fetches so far (read by the metrics layer).
        self.errors = 0
        #: Successful fetches so far.
        self.fetches = 0
        #: Kind of the most recent failure, ``None`` after a success.
        self.last_error: str | None = None
        self._current = fallback
        self._last_good_at: float | None = None
        self._next_due = -math.inf
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._logged_kinds: set[str] = set()
        self._opener = urllib.request.build_opener(NoRedirect())

    # ------------------------------------------------------------------ IntensityProvider
    def current(self) -> CarbonIntensity:
        """The value in force: the last good fetch, else the fallback. O(1), never blocks."""
        return self._current

    def maybe_refresh(self, now_monotonic_s: float) -> None:
        """Start a fetch when one is due (at most every ``refresh_interval`` s); never blocks
        unless ``background=False``."""
        with self._lock:
            if self._closed or now_monotonic_s < self._next_due:
                return
            if self._thread is not None and self._thread.is_alive():
                return
            self._next_due = now_monotonic_s + self.refresh_interval
            if not self.background:
                thread = None
            else:
                thread = threading.Thread(
                    target=self.refresh_now,
                    args=(now_monotonic_s,),
                    name=f"hf-eco2ai-{self.name}",
                    daemon=True,
                )
                self._thread = thread
        if thread is None:
            self.refresh_now(now_monotonic_s)
        else:
            thread.start()

    def close(self) -> None:
        """Stop fetching. Idempotent; an in-flight fetch finishes within ``timeout``."""
        with self._lock:
            self._closed = True

    # ------------------------------------------------------------------ fetching
    def wait(self, timeout: float | None = None) -> None:
        """Wait for an in-flight background fetch (for tests and orderly shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def refresh_now(self, now_monotonic_s: float | None = None) -> bool:
        """Fetch, validate and apply one value synchronously; ``True`` on success."""
        now = time.monotonic() if now_monotonic_s is None else now_monotonic_s
        try:
            payload = self._fetch_json()
            value = self._parse(payload)
        except ProviderError as exc:
            self._failed(exc, now)
            return False
        except Exception as exc:  # a parser bug must not reach the sampler thread
            self._failed(ProviderError("internal", type(exc).__name__), now)
            return False
        if self._closed:
            return False
        self._current = value
        self._last_good_at = now
        self.fetches += 1
        self.last_error = None
        return True

    def _failed(self, exc: ProviderError, now: float) -> None:
        self.errors += 1
        self.last_error = exc.kind
        stale = self._last_good_at is not None and now - self._last_good_at > self.max_age
        if stale:
            self._current = self.fallback
            self._last_good_at = None
        if exc.kind not in self._logged_kinds:
            self._logged_kinds.add(exc.kind)
            logger.warning(
                "hf-eco2ai: %s carbon-intensity fetch failed (%s); using %.1f gCO2e/kWh (%s). "
                "Further '%s' failures are counted, not logged.",
                self.name,
                self._scrub(str(exc)),
                self._current.value,
                self._current.source,
                exc.kind,
            )

    def _scrub(self, text: str) -> str:
        """Remove anything secret from ``text`` (subclasses holding secrets override)."""
        return text

    def _fetch_json(self) -> object:
        request = self._request()
        deadline = time.monotonic() + self.timeout
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                length = response.headers.get("Content-Length")
                if length is not None and length.strip().isdigit() and int(length) > self.max_bytes:
                    raise ProviderError("too-large", f"Content-Length {length.strip()}")
                chunks: list[bytes] = []
                size = 0
                while True:
                    if time.monotonic() > deadline:
                        raise ProviderError("timeout", f"body not read within {self.timeout:g} s")
                    chunk = response.read1(16384)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ProviderError("too-large", f"body over {self.max_bytes} bytes")
                    chunks.append(chunk)
        except ProviderError:
            raise
        except urllib.error.HTTPError as exc:
            exc.close()
            code = exc.code
            if code in (401, 403):
                raise ProviderError("auth", f"HTTP {code}") from None
            if code == 429:
                raise ProviderError("rate-limited", "HTTP 429") from None
            raise ProviderError(f"http-{code}", f"HTTP {code}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise ProviderError("timeout", f"no answer within {self.timeout:g} s") from None
            raise ProviderError("network", type(exc.reason).__name__) from None
        except TimeoutError:
            raise ProviderError("timeout", f"no answer within {self.timeout:g} s") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise ProviderError("network", type(exc).__name__) from None
        try:
            text = b"".join(chunks).decode("utf-8")
            return json.loads(text, parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ProviderError("json", "response is not valid JSON") from None

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _request(self) -> urllib.request.Request:
        """The HTTP request of one fetch."""

    @abstractmethod
    def _parse(self, payload: object) -> CarbonIntensity:
        """Validate a decoded response; raise :class:`ProviderError` on anything unexpected."""


class ElectricityMapsProvider(LiveIntensityProvider):
    """Electricity Maps ``GET /v3/carbon-intensity/latest?zone=<zone>`` with header ``auth-token``.

    Args:
        zone: an Electricity Maps zone (``DE``, ``FR``, ``US-CAL-CISO``, ``SE-SE3`` …).
        token: the API token (see :data:`ELECTRICITYMAPS_TOKEN_ENV`).
        fallback, **kwargs: see :class:`LiveIntensityProvider`.

    >>> from hf_eco2ai.carbon.intensity import CarbonIntensity
    >>> p = ElectricityMapsProvider("DE", "secret", fallback=CarbonIntensity(381, "DE", "config"))
    >>> "secret" in repr(p)
    False
    """

    name: ClassVar[str] = "electricitymaps"
    default_url: ClassVar[str] = ELECTRICITYMAPS_URL

    def __init__(
        self,
        zone: str,
        token: str,
        *,
        fallback: CarbonIntensity,
        refresh_interval: float = 900.0,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        base_url: str | None = None,
        max_age: float | None = None,
        background: bool = True,
    ) -> None:
        token = token.strip() if isinstance(token, str) else ""
        if not token or not re.fullmatch(r"[\x21-\x7e]+", token):
            raise ValueError(f"{ELECTRICITYMAPS_TOKEN_ENV} is empty or has invalid characters")
        zone = zone.strip() if isinstance(zone, str) else ""
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", zone):
            raise ValueError(f"invalid Electricity Maps zone {zone!r}")
        super().__init__(
            fallback,
            refresh_interval=refresh_interval,
            timeout=timeout,
            max_bytes=max_bytes,
            base_url=base_url,
            max_age=max_age,
            background=background,
        )
        self.zone = zone
        self.__token = _Secret(token)

    def __repr__(self) -> str:
        return (
            f"ElectricityMapsProvider(zone={self.zone!r}, token=<set>, base_url={self.base_url!r})"
        )

    def _scrub(self, text: str) -> str:
        return text.replace(self.__token.reveal(), "<token>")

    def _request(self) -> urllib.request.Request:
        query = urllib.parse.urlencode({"zone": self.zone})
        return urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            f"{self.base_url}/v3/carbon-intensity/latest?{query}",
            headers={"auth-token": self.__token.reveal(), "Accept": "application/json"},
        )

    def _parse(self, payload: object) -> CarbonIntensity:
        if not isinstance(payload, dict):
            raise ProviderError("schema", "response is not a JSON object")
        if "carbonIntensity" not in payload:
            raise ProviderError("schema", "no 'carbonIntensity' in response")
        zone = payload.get("zone")
        if zone is not None and (not isinstance(zone, str) or zone.upper() != self.zone.upper()):
            raise ProviderError("schema", "response is for another zone")
        unit = payload.get("unit")
        if unit is not None and (
            not isinstance(unit, str) or unit.replace(" ", "").lower() not in _G_PER_KWH
        ):
            raise ProviderError("units", "unexpected unit")
        value = _number(payload["carbonIntensity"], "carbonIntensity")
        return CarbonIntensity(value, zone=self.zone, source=self.name)


_G_PER_KWH = frozenset({"gco2eq/kwh", "gco2e/kwh", "gco2/kwh"})
_UK_REGION_NAMES = frozenset({"england", "scotland", "wales"})
_OUTWARD_CODE = re.compile(r"[A-Z]{1,2}[0-9][A-Z0-9]?")


class UKCarbonIntensityProvider(LiveIntensityProvider):
    """The GB National Grid ESO Carbon Intensity API (no key).

    ``region=None`` uses the national ``GET /intensity``; a region id ``1`` to ``17`` uses
    ``/regional/regionid/<id>``; ``england``/``scotland``/``wales`` use ``/regional/<name>``;
    a postcode's outward code (``RG10``) uses ``/regional/postcode/<code>``.

    >>> from hf_eco2ai.carbon.intensity import CarbonIntensity
    >>> UKCarbonIntensityProvider("RG10 9AB", fallback=CarbonIntensity(1, "GB", "x")).zone
    'GB-RG10'
    """

    name: ClassVar[str] = "uk-carbon-intensity"
    default_url: ClassVar[str] = UK_CARBON_INTENSITY_URL

    def __init__(
        self,
        region: str | None = None,
        *,
        fallback: CarbonIntensity,
        refresh_interval: float = 900.0,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_bytes: int = DEFAULT_MAX_BYTES,
        base_url: str | None = None,
        max_age: float | None = None,
        background: bool = True,
    ) -> None:
        super().__init__(
            fallback,
            refresh_interval=refresh_interval,
            timeout=timeout,
            max_bytes=max_bytes,
            base_url=base_url,
            max_age=max_age,
            background=background,
        )
        self.path, self.zone = uk_endpoint(region)

    def __repr__(self) -> str:
        return f"UKCarbonIntensityProvider(zone={self.zone!r}, base_url={self.base_url!r})"

    def _request(self) -> urllib.request.Request:
        return urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            f"{self.base_url}{self.path}", headers={"Accept": "application/json"}
        )

    def _parse(self, payload: object) -> CarbonIntensity:
        item = _first(payload, "response")
        if "intensity" not in item and "data" in item:  # regional shapes nest one level more
            item = _first(item, "region entry")
        intensity = item.get("intensity")
        if not isinstance(intensity, dict):
            raise ProviderError("schema", "no 'intensity' object")
        actual = intensity.get("actual")
        if actual is not None:
            value = _number(actual, "intensity.actual")
        else:
            value = _number(intensity.get("forecast"), "intensity.forecast")
        return CarbonIntensity(value, zone=self.zone, source=self.name)


def _first(container: object, what: str) -> dict[str, object]:
    data = container.get("data") if isinstance(container, dict) else None
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise ProviderError("schema", f"{what}: 'data' is not a non-empty list of objects")
    first: dict[str, object] = data[0]
    return first


def uk_endpoint(region: str | None) -> tuple[str, str]:
    """API path and zone label for a GB region spec (see :class:`UKCarbonIntensityProvider`).

    Raises:
        ValueError: not a region id, nation or outward code.

    >>> uk_endpoint(None), uk_endpoint("13")
    (('/intensity', 'GB'), ('/regional/regionid/13', 'GB-region-13'))
    >>> uk_endpoint("Scotland")
    ('/regional/scotland', 'GB-scotland')
    """
    if region is None or not region.strip() or region.strip().upper() in ("GB", "GBR", "UK"):
        return "/intensity", "GB"
    text = region.strip()
    if text.isdigit() and 1 <= int(text) <= 17:
        return f"/regional/regionid/{int(text)}", f"GB-region-{int(text)}"
    if text.lower() in _UK_REGION_NAMES:
        return f"/regional/{text.lower()}", f"GB-{text.lower()}"
    outward = text.upper().split()[0]
    if _OUTWARD_CODE.fullmatch(outward):
        return f"/regional/postcode/{outward}", f"GB-{outward}"
    raise ValueError(
        f"GB region {region!r}: use a region id 1-17, england/scotland/wales or a postcode"
    )


def make_provider(
    name: str,
    *,
    fallback: CarbonIntensity,
    zone: str,
    region: str | None = None,
    refresh_interval: float = 900.0,
    environ: Mapping[str, str] | None = None,
    base_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    background: bool = True,
) -> IntensityProvider | None:
    """Build the live provider ``name`` (a ``carbon_provider`` value), or ``None`` with one
    warning when it cannot serve this location (no token, not in Great Britain, bad region).

    ``zone`` is the grid zone resolved from the tables (``FR``, ``CA-ON``, ``GB``); ``region``, when
    given, is a provider-specific location used verbatim: the Electricity Maps zone
    (``US-CAL-CISO``) or the GB region of the UK API (``13``, ``scotland``, ``RG10``).

    >>> from hf_eco2ai.carbon.intensity import CarbonIntensity
    >>> fb = CarbonIntensity(56.0, "FR", "table:owid@2023")
    >>> make_provider("electricitymaps", fallback=fb, zone="FR", environ={}) is None
    True
    """
    env = os.environ if environ is None else environ
    if name == "none":
        return None
    if name == ElectricityMapsProvider.name:
        token = env.get(ELECTRICITYMAPS_TOKEN_ENV, "").strip()
        if not token:
            logger.warning(
                "hf-eco2ai: carbon_provider=electricitymaps needs an API token in %s; "
                "using the table value %.1f gCO2e/kWh (%s)",
                ELECTRICITYMAPS_TOKEN_ENV,
                fallback.value,
                fallback.source,
            )
            return None
        em_zone = region.strip() if region and region.strip() else zone
        if em_zone == zone and re.fullmatch(r"US-[A-Z]{2}", zone):
            logger.warning(
                "hf-eco2ai: Electricity Maps divides the US by balancing authority, not state; "
                "set OTEL_PYTHON_HF_ECO2AI_REGION to its zone (e.g. US-CAL-CISO). Using the "
                "table value %.1f gCO2e/kWh (%s) for %s",
                fallback.value,
                fallback.source,
                zone,
            )
            return None
        try:
            return ElectricityMapsProvider(
                em_zone,
                token,
                fallback=fallback,
                refresh_interval=refresh_interval,
                base_url=base_url,
                timeout=timeout,
                background=background,
            )
        except ValueError as exc:
            logger.warning(
                "hf-eco2ai: electricitymaps disabled: %s", str(exc).replace(token, "<token>")
            )
            return None
    if name == UKCarbonIntensityProvider.name:
        if zone.split("-")[0] not in ("GB", "WORLD"):
            logger.warning(
                "hf-eco2ai: carbon_provider=uk-carbon-intensity covers Great Britain only, "
                "not %s; using the table value %.1f gCO2e/kWh (%s)",
                zone,
                fallback.value,
                fallback.source,
            )
            return None
        try:
            return UKCarbonIntensityProvider(
                region,
                fallback=fallback,
                refresh_interval=refresh_interval,
                base_url=base_url,
                timeout=timeout,
                background=background,
            )
        except ValueError as exc:
            logger.warning("hf-eco2ai: uk-carbon-intensity disabled: %s", exc)
            return None
    raise ValueError(f"unknown carbon provider {name!r}")
