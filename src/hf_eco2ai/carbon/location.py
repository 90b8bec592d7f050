"""Where is this machine's grid? Resolve the carbon intensity in force, recording who answered.

Order (the first that answers wins; :attr:`Resolution.method` records it):

1. ``config``: an explicit ``carbon_intensity``;
2. ``country``: ``country`` (+ ``region``) in the carbon table (``region``: ``region`` alone,
   given as a full zone id such as ``US-CA`` or a cloud region name);
3. ``cloud-env``: a cloud region named by the standard environment (:data:`ENV_REGION_VARS`),
   then ``cloud-metadata``: the instance metadata endpoint, only with ``cloud_metadata=True``;
4. ``world-average``, with one warning saying how to set the location.

There is no IP geolocation, and no network at all unless ``cloud_metadata`` or a live
``carbon_provider`` is switched on. A live provider wraps the value found, which stays its
fallback.

Example:
    >>> from hf_eco2ai.config import CarbonConfig
    >>> r = resolve_intensity(CarbonConfig(country="FR"), environ={})
    >>> r.method, r.intensity.zone, r.intensity.source
    ('country', 'FR', 'table:owid@2024/lifecycle')
    >>> resolve_intensity(CarbonConfig(), environ={"AWS_REGION": "eu-west-3"}).method
    'cloud-env'
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hf_eco2ai._logging import warn_once
from hf_eco2ai.carbon import tables
from hf_eco2ai.carbon.intensity import CarbonIntensity, IntensityProvider, StaticIntensity
from hf_eco2ai.carbon.providers import NoRedirect, make_provider

if TYPE_CHECKING:
    from hf_eco2ai.config import CarbonConfig

logger = logging.getLogger("hf_eco2ai.carbon")

#: Environment variables naming the cloud region, in the order they are read, with the provider
#: whose names they hold (``None``: any). ``REGION_NAME`` is set by Azure App Service/Functions,
#: sometimes as a display name (``West Europe``), which is accepted.
ENV_REGION_VARS: tuple[tuple[str, str | None], ...] = (
    ("AWS_REGION", "aws"),
    ("AWS_DEFAULT_REGION", "aws"),
    ("GOOGLE_CLOUD_REGION", "gcp"),
    ("CLOUD_ML_REGION", "gcp"),
    ("CLOUDSDK_COMPUTE_REGION", "gcp"),
    ("FUNCTION_REGION", "gcp"),
    ("AZURE_REGION", "azure"),
    ("AZURE_LOCATION", "azure"),
    ("REGION_NAME", None),
)

#: ``Resolution.method`` values.
METHODS = ("config", "country", "region", "cloud-env", "cloud-metadata", "world-average")

METADATA_URL = "http://169.254.169.254"
METADATA_TIMEOUT_S = 1.0
_METADATA_MAX_BYTES = 4096
_REGION_RE = re.compile(r"[a-z0-9-]{2,40}")


@dataclass(frozen=True, slots=True)
class CloudLocation:
    """A cloud provider and region, as the metadata endpoint reported it."""

    provider: str
    region: str


@dataclass(frozen=True)
class Resolution:
    """The outcome of :func:`resolve_intensity`.

    Attributes:
        provider: what the sampler reads (``StaticIntensity`` or a live provider).
        intensity: the value found by the resolution order (the live provider's fallback).
        method: which step answered: one of :data:`METHODS`.
        detail: human-readable how (``"env AWS_REGION=eu-west-3"``, ``"country=FR"``).
        zone: the grid zone (``FR``, ``US-CA``; for a cloud region, the zone it is in).
        cloud: the cloud region, when one decided.
        live: the live provider's name, when one wraps the value.
    """

    provider: IntensityProvider
    intensity: CarbonIntensity
    method: str
    detail: str
    zone: str
    cloud: tables.CloudRegion | None = None
    live: str | None = None

    def current(self) -> CarbonIntensity:
        """Shortcut for ``provider.current()``."""
        return self.provider.current()


MetadataFetcher = Callable[[], "CloudLocation | None"]


class CloudMetadataClient:
    """Ask the cloud instance-metadata endpoints for the region (opt-in; short timeout).

    The AWS (IMDSv2 token flow), GCP (``Metadata-Flavor: Google``) and Azure (``Metadata: true``)
    probes run in parallel on daemon threads; the call returns within about ``timeout`` seconds.
    Proxies and redirects are never followed. Base URLs are injectable for tests.

    >>> client = CloudMetadataClient(timeout=0.5)
    >>> client.timeout
    0.5
    """

    def __init__(
        self,
        *,
        aws_url: str = METADATA_URL,
        gcp_url: str = METADATA_URL,
        azure_url: str = METADATA_URL,
        timeout: float = METADATA_TIMEOUT_S,
        providers: tuple[str, ...] = ("aws", "gcp", "azure"),
    ) -> None:
        if not 0 < timeout <= METADATA_TIMEOUT_S:
            raise ValueError("metadata timeout must be in (0, 1] seconds")
        self.urls = {"aws": aws_url.rstrip("/"), "gcp": gcp_url.rstrip("/")}
        self.urls["azure"] = azure_url.rstrip("/")
        for url in self.urls.values():
            if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise ValueError("metadata URLs must be http(s)")
        self.timeout = timeout
        self.providers = tuple(p for p in providers if p in self.urls)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())

    def __call__(self) -> CloudLocation | None:
        """The first region found (in ``aws``, ``gcp``, ``azure`` order), or ``None``."""
        results: dict[str, str | None] = {}
        done = threading.Event()
        lock = threading.Lock()
        probes: dict[str, Callable[[], str | None]] = {
            "aws": self._aws,
            "gcp": self._gcp,
            "azure": self._azure,
        }

        def run(provider: str) -> None:
            try:
                region = probes[provider]()
            except Exception:  # any failure is "no answer"
                region = None
            with lock:
                results[provider] = region
                if len(results) == len(self.providers):
                    done.set()

        for provider in self.providers:
            threading.Thread(
                target=run, args=(provider,), name=f"hf-eco2ai-imds-{provider}", daemon=True
            ).start()
        if self.providers:
            done.wait(self.timeout + 0.25)
        with lock:
            snapshot = dict(results)
        for provider in self.providers:
            region = snapshot.get(provider)
            if region is not None:
                return CloudLocation(provider, region)
        return None

    def _get(
        self, url: str, headers: Mapping[str, str], method: str = "GET"
    ) -> tuple[str, Mapping[str, str]]:
        request = urllib.request.Request(  # noqa: S310 (scheme checked in __init__)
            url, headers=dict(headers), method=method
        )
        with self._opener.open(request, timeout=self.timeout) as response:
            body = response.read(_METADATA_MAX_BYTES + 1)
            if len(body) > _METADATA_MAX_BYTES:
                raise ValueError("metadata response too large")
            return body.decode("utf-8").strip(), response.headers

    def _aws(self) -> str | None:
        base = self.urls["aws"]
        token, _ = self._get(
            f"{base}/latest/api/token",
            {"X-aws-ec2-metadata-token-ttl-seconds": "60"},
            method="PUT",
        )
        if not token or len(token) > 512 or not token.isprintable():
            return None
        region, _ = self._get(
            f"{base}/latest/meta-data/placement/region", {"X-aws-ec2-metadata-token": token}
        )
        return region if _REGION_RE.fullmatch(region) else None

    def _gcp(self) -> str | None:
        text, headers = self._get(
            f"{self.urls['gcp']}/computeMetadata/v1/instance/zone", {"Metadata-Flavor": "Google"}
        )
        if headers.get("Metadata-Flavor") != "Google":
            return None
        zone = text.rsplit("/", 1)[-1]
        region = zone.rsplit("-", 1)[0] if zone.count("-") >= 2 else ""
        return region if _REGION_RE.fullmatch(region) else None

    def _azure(self) -> str | None:
        text, _ = self._get(
            f"{self.urls['azure']}/metadata/instance/compute/location"
            "?api-version=2021-02-01&format=text",
            {"Metadata": "true"},
        )
        region = text.lower()
        return region if _REGION_RE.fullmatch(region) else None


def how_to_set_location() -> str:
    """The advice given when no location is known.

    >>> "OTEL_PYTHON_HF_ECO2AI_COUNTRY" in how_to_set_location()
    True
    """
    return (
        "set OTEL_PYTHON_HF_ECO2AI_COUNTRY (ISO code, e.g. FR) and optionally "
        "OTEL_PYTHON_HF_ECO2AI_REGION (e.g. CA for California, or a cloud region), or "
        "OTEL_PYTHON_HF_ECO2AI_CARBON_INTENSITY (gCO2e/kWh); on a cloud VM set AWS_REGION, "
        "GOOGLE_CLOUD_REGION or AZURE_REGION, or allow the metadata endpoint with "
        "OTEL_PYTHON_HF_ECO2AI_CLOUD_METADATA=true"
    )


def resolve_intensity(
    config: CarbonConfig,
    *,
    environ: Mapping[str, str] | None = None,
    metadata_fetcher: MetadataFetcher | None = None,
    provider_base_url: str | None = None,
    background: bool = True,
) -> Resolution:
    """Resolve the grid carbon intensity for ``config`` (see the module docstring for the order).

    Args:
        config: the validated configuration.
        environ: the environment to read cloud-region variables and API tokens from
            (default ``os.environ``).
        metadata_fetcher: replaces :class:`CloudMetadataClient` (tests); called only when
            ``config.cloud_metadata`` is true.
        provider_base_url: base URL of the live provider (tests point it at a local server).
        background: whether the live provider fetches on a background thread.

    Raises:
        hf_eco2ai.errors.ConfigError: ``carbon_table='eco2ai'`` without eco2ai installed.

    >>> from hf_eco2ai.config import CarbonConfig
    >>> resolve_intensity(CarbonConfig(carbon_intensity=120.0), environ={}).intensity
    CarbonIntensity(value=120.0, zone='config', source='config')
    >>> r = resolve_intensity(CarbonConfig(country="US", region="CA"), environ={})
    >>> r.zone, r.method
    ('US-CA', 'country')
    """
    env = os.environ if environ is None else environ
    tables.ensure_table_available(config.carbon_table)
    static, method, detail, zone, cloud = _resolve_static(config, env, metadata_fetcher)
    provider: IntensityProvider = StaticIntensity(static)
    live: str | None = None
    if config.carbon_provider != "none":
        if method == "config":
            logger.warning(
                "hf-eco2ai: carbon_intensity=%g is set, so carbon_provider=%s is not used",
                static.value,
                config.carbon_provider,
            )
        else:
            live_region = None
            if config.region and method in ("country", "region") and not _known(config):
                live_region = config.region
            built = make_provider(
                config.carbon_provider,
                fallback=static,
                zone=zone,
                region=live_region,
                refresh_interval=config.carbon_refresh_interval,
                environ=env,
                base_url=provider_base_url,
                background=background,
            )
            if built is not None:
                provider = built
                live = config.carbon_provider
    logger.info(
        "hf-eco2ai: carbon intensity %.1f gCO2e/kWh for %s from %s (%s: %s)%s",
        static.value,
        static.zone,
        static.source,
        method,
        detail,
        f"; live provider {live}" if live else "",
    )
    return Resolution(provider, static, method, detail, zone, cloud, live)


def _known(config: CarbonConfig) -> bool:
    region = config.region or ""
    return (
        tables.find_zone(config.country, region) is not None
        or tables.find_cloud_region(region) is not None
    )


def _resolve_static(
    config: CarbonConfig, env: Mapping[str, str], metadata_fetcher: MetadataFetcher | None
) -> tuple[CarbonIntensity, str, str, str, tables.CloudRegion | None]:
    # 1. explicit value
    if config.carbon_intensity is not None:
        zone = "config"
        if config.country is not None:
            zone = config.country
            found = tables.find_zone(config.country, config.region) if config.region else None
            zone = found.zone if found is not None else zone
        value = CarbonIntensity(float(config.carbon_intensity), zone=zone, source="config")
        return value, "config", "carbon_intensity", zone, None
    # 2. country (+ region), or region alone
    if config.country is not None:
        value = tables.lookup(config.country, config.region, table=config.carbon_table)
        cloud = tables.find_cloud_region(config.region) if config.region else None
        if cloud is not None and value.zone != cloud.label:
            cloud = None
        zone = cloud.zone if cloud is not None else value.zone
        detail = f"country={config.country}" + (f" region={config.region}" if config.region else "")
        return value, "country", detail, zone, cloud
    if config.region is not None:
        zone_entry = tables.find_zone(None, config.region)
        if zone_entry is not None:
            return (
                zone_entry.intensity(),
                "region",
                f"region={config.region}",
                zone_entry.zone,
                None,
            )
        cloud = tables.find_cloud_region(config.region)
        if cloud is not None:
            return cloud.intensity(), "region", f"region={config.region}", cloud.zone, cloud
        logger.warning(
            "hf-eco2ai: region %r is neither a grid zone (e.g. US-CA) nor a known cloud region; "
            "set OTEL_PYTHON_HF_ECO2AI_COUNTRY too",
            config.region,
        )
    # 3a. cloud region from the environment
    for var, provider in ENV_REGION_VARS:
        raw = env.get(var, "").strip()
        if not raw:
            continue
        cloud = tables.find_cloud_region(raw, provider)
        if cloud is not None:
            return cloud.intensity(), "cloud-env", f"env {var}={raw}", cloud.zone, cloud
        logger.warning("hf-eco2ai: %s=%r is not a cloud region hf-eco2ai knows", var, raw)
    # 3b. cloud metadata endpoint (opt-in)
    if config.cloud_metadata:
        fetch = metadata_fetcher if metadata_fetcher is not None else CloudMetadataClient()
        started = time.monotonic()
        try:
            location = fetch()
        except Exception:  # a fetcher must not break start-up
            location = None
        logger.debug("hf-eco2ai: metadata lookup took %.2f s", time.monotonic() - started)
        if location is not None:
            cloud = tables.find_cloud_region(location.region, location.provider)
            if cloud is not None:
                detail = f"metadata {location.provider}:{location.region}"
                return cloud.intensity(), "cloud-metadata", detail, cloud.zone, cloud
            logger.warning(
                "hf-eco2ai: the %s metadata endpoint reports region %r, which hf-eco2ai "
                "does not know",
                location.provider,
                location.region,
            )
    # 4. world average
    world = tables.world_average()
    warn_once(
        logger,
        "world-average",
        "hf-eco2ai: grid location unknown; using the world average carbon intensity "
        "%.1f gCO2e/kWh (%s). To use your grid's figure, %s.",
        world.value,
        tables.world_average_year(),
        how_to_set_location(),
    )
    return world, "world-average", "no location configured", world.zone, None
