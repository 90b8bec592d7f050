"""Resolution order, cloud env vars and the opt-in metadata endpoints (local server only)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hf_eco2ai.carbon import tables
from hf_eco2ai.carbon.intensity import CarbonIntensity, StaticIntensity
from hf_eco2ai.carbon.location import (
    ENV_REGION_VARS,
    METHODS,
    CloudLocation,
    CloudMetadataClient,
    Resolution,
    how_to_set_location,
    resolve_intensity,
)
from hf_eco2ai.carbon.providers import ElectricityMapsProvider, UKCarbonIntensityProvider
from hf_eco2ai.config import CarbonConfig, ConfigError

# --------------------------------------------------------------------------- a fake metadata server
Responder = Callable[[str, str, dict[str, str]], "tuple[int, dict[str, str], bytes]"]


class MetadataServer:
    """Answers like one cloud's instance-metadata service, on 127.0.0.1."""

    def __init__(self) -> None:
        self.responder: Responder = lambda method, path, headers: (404, {}, b"")
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.delay = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _serve(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append((self.command, self.path, headers))
                if outer.delay:
                    time.sleep(outer.delay)
                status, extra, body = outer.responder(self.command, self.path, headers)
                try:
                    self.send_response(status)
                    for key, value in extra.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

            do_GET = do_PUT = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def _shared() -> Iterator[MetadataServer]:
    srv = MetadataServer()
    yield srv
    srv.close()


@pytest.fixture
def imds(_shared: MetadataServer) -> MetadataServer:
    _shared.requests.clear()
    _shared.delay = 0.0
    _shared.responder = lambda method, path, headers: (404, {}, b"")
    return _shared


def aws_responder(region: bytes = b"eu-west-3") -> Responder:
    def respond(
        method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if method == "PUT" and path == "/latest/api/token":
            if headers.get("x-aws-ec2-metadata-token-ttl-seconds"):
                return 200, {}, b"AQAEAtoken=="
            return 400, {}, b""
        if path == "/latest/meta-data/placement/region":
            if headers.get("x-aws-ec2-metadata-token") == "AQAEAtoken==":
                return 200, {}, region
            return 401, {}, b""
        return 404, {}, b""

    return respond


def gcp_responder(zone: bytes = b"projects/123456/zones/europe-west9-a") -> Responder:
    def respond(
        method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if (
            path == "/computeMetadata/v1/instance/zone"
            and headers.get("metadata-flavor") == "Google"
        ):
            return 200, {"Metadata-Flavor": "Google"}, zone
        return 403, {}, b""

    return respond


def azure_responder(location: bytes = b"westeurope") -> Responder:
    def respond(
        method: str, path: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        expected = "/metadata/instance/compute/location?api-version=2021-02-01&format=text"
        if path == expected and headers.get("metadata") == "true":
            return 200, {}, location
        return 400, {}, b""

    return respond


def client(server: MetadataServer, *providers: str, timeout: float = 0.5) -> CloudMetadataClient:
    return CloudMetadataClient(
        aws_url=server.url,
        gcp_url=server.url,
        azure_url=server.url,
        timeout=timeout,
        providers=providers or ("aws", "gcp", "azure"),
    )


# --------------------------------------------------------------------------- 1. config
def test_explicit_intensity_wins() -> None:
    cfg = CarbonConfig(carbon_intensity=123.0, country="FR")
    env = {"AWS_REGION": "us-east-1"}
    r = resolve_intensity(cfg, environ=env, metadata_fetcher=_never)
    assert r.method == "config"
    assert r.intensity == CarbonIntensity(123.0, zone="FR", source="config")
    assert isinstance(r.provider, StaticIntensity)
    assert r.current() == r.intensity
    zoned = resolve_intensity(
        CarbonConfig(carbon_intensity=5, country="US", region="CA"), environ={}
    )
    assert zoned.intensity.zone == "US-CA"
    bare = resolve_intensity(CarbonConfig(carbon_intensity=0), environ={})
    assert bare.intensity == CarbonIntensity(0.0, zone="config", source="config")


def test_explicit_intensity_ignores_live_provider(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")
    cfg = CarbonConfig(carbon_intensity=50.0, carbon_provider="uk-carbon-intensity", country="GB")
    r = resolve_intensity(cfg, environ={})
    assert r.live is None
    assert isinstance(r.provider, StaticIntensity)
    assert "not used" in caplog.text


# --------------------------------------------------------------------------- 2. country
@pytest.mark.parametrize("code", ["FR", "fra", "PL", "POL"])
def test_country_matches_shipped_table(code: str) -> None:
    r = resolve_intensity(CarbonConfig(country=code), environ={"AWS_REGION": "us-east-1"})
    assert r.method == "country"
    assert r.intensity == tables.country_intensity(code)
    assert r.intensity.source.startswith("table:owid@")
    assert r.zone == r.intensity.zone == CarbonConfig(country=code).country


@pytest.mark.parametrize(
    ("country", "region", "zone"),
    [
        ("US", "CA", "US-CA"),
        ("US", "Texas", "US-TX"),
        ("CA", "QC", "CA-QC"),
        ("AU", "VIC", "AU-VIC"),
    ],
)
def test_country_and_region(country: str, region: str, zone: str) -> None:
    r = resolve_intensity(CarbonConfig(country=country, region=region), environ={})
    assert (r.method, r.zone, r.intensity.zone) == ("country", zone, zone)
    assert r.detail == f"country={country} region={region}"


def test_country_and_cloud_region() -> None:
    r = resolve_intensity(CarbonConfig(country="DE", region="eu-central-1"), environ={})
    assert r.method == "country"
    assert r.cloud is not None
    assert r.cloud.label == "aws:eu-central-1→DE"
    assert r.zone == "DE"


def test_unknown_region_falls_back_to_country(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")
    r = resolve_intensity(CarbonConfig(country="FR", region="Atlantis"), environ={})
    assert r.intensity == tables.country_intensity("FR")
    assert len(caplog.records) == 1


@pytest.mark.parametrize(
    ("region", "zone", "label"),
    [("US-CA", "US-CA", "US-CA"), ("eu-west-3", "FR", "aws:eu-west-3→FR")],
)
def test_region_alone(region: str, zone: str, label: str) -> None:
    r = resolve_intensity(CarbonConfig(region=region), environ={})
    assert (r.method, r.zone, r.intensity.zone) == ("region", zone, label)


def test_unknown_region_alone_continues(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")
    r = resolve_intensity(CarbonConfig(region="Atlantis"), environ={"AWS_REGION": "eu-west-3"})
    assert r.method == "cloud-env"
    assert "Atlantis" in caplog.text


# --------------------------------------------------------------------------- 3a. environment
ENV_CASES = [
    ("AWS_REGION", "us-east-1", "aws:us-east-1→US-VA"),
    ("AWS_DEFAULT_REGION", "eu-west-3", "aws:eu-west-3→FR"),
    ("GOOGLE_CLOUD_REGION", "europe-west9", "gcp:europe-west9→FR"),
    ("CLOUD_ML_REGION", "us-central1", "gcp:us-central1→US-IA"),
    ("CLOUDSDK_COMPUTE_REGION", "europe-west4", "gcp:europe-west4→NL"),
    ("FUNCTION_REGION", "asia-northeast1", "gcp:asia-northeast1→JP"),
    ("AZURE_REGION", "westeurope", "azure:westeurope→NL"),
    ("AZURE_LOCATION", "swedencentral", "azure:swedencentral→SE"),
    ("REGION_NAME", "West Europe", "azure:westeurope→NL"),
    ("REGION_NAME", "us-west-2", "aws:us-west-2→US-OR"),
]


def test_every_env_var_is_tested() -> None:
    assert {var for var, _ in ENV_REGION_VARS} == {var for var, _, _ in ENV_CASES}


@pytest.mark.parametrize(("var", "value", "label"), ENV_CASES)
def test_cloud_region_from_env(var: str, value: str, label: str) -> None:
    r = resolve_intensity(CarbonConfig(), environ={var: value})
    assert r.method == "cloud-env"
    assert r.intensity.zone == label
    assert r.detail == f"env {var}={value}"
    assert r.cloud is not None
    assert r.zone == r.cloud.zone


def test_env_order_and_provider_scoping(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")
    env = {"AWS_REGION": "eu-west-3", "GOOGLE_CLOUD_REGION": "us-central1"}
    assert resolve_intensity(CarbonConfig(), environ=env).detail == "env AWS_REGION=eu-west-3"
    # a GCP name in an AWS variable is not taken as GCP; the next variable answers
    env = {"AWS_REGION": "europe-west9", "AZURE_REGION": "francecentral"}
    r = resolve_intensity(CarbonConfig(), environ=env)
    assert r.intensity.zone == "azure:francecentral→FR"
    assert "AWS_REGION" in caplog.text
    assert not any("world average" in m.getMessage() for m in caplog.records)


def test_blank_env_values_are_ignored() -> None:
    r = resolve_intensity(CarbonConfig(), environ={"AWS_REGION": "  ", "REGION_NAME": ""})
    assert r.method == "world-average"


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for var, _ in ENV_REGION_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_REGION", "ap-southeast-2")
    assert resolve_intensity(CarbonConfig()).intensity.zone == "aws:ap-southeast-2→AU-NSW"


# --------------------------------------------------------------------------- 4. world average
def _never() -> CloudLocation | None:
    raise AssertionError("the metadata endpoint must not be asked")


def test_world_average_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")
    r = resolve_intensity(CarbonConfig(), environ={}, metadata_fetcher=_never)
    assert r.method == "world-average"
    assert r.intensity == tables.world_average()
    assert r.zone == "WORLD"
    assert r.cloud is None
    assert r.live is None
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    for var in (
        "OTEL_PYTHON_HF_ECO2AI_COUNTRY",
        "OTEL_PYTHON_HF_ECO2AI_REGION",
        "OTEL_PYTHON_HF_ECO2AI_CARBON_INTENSITY",
        "AWS_REGION",
        "OTEL_PYTHON_HF_ECO2AI_CLOUD_METADATA",
    ):
        assert var in message
    assert how_to_set_location() in message


def test_methods_constant() -> None:
    assert set(METHODS) == {"config", "country", "region", "cloud-env", "cloud-metadata"} | {
        "world-average"
    }


# --------------------------------------------------------------------------- 3b. metadata
def test_metadata_not_touched_when_opted_out(imds: MetadataServer) -> None:
    calls: list[int] = []

    def fetcher() -> CloudLocation | None:
        calls.append(1)
        return CloudLocation("aws", "eu-west-3")

    r = resolve_intensity(CarbonConfig(), environ={}, metadata_fetcher=fetcher)
    assert r.method == "world-average"
    assert not calls
    assert not imds.requests


def test_metadata_opt_in_with_fetcher() -> None:
    r = resolve_intensity(
        CarbonConfig(cloud_metadata=True),
        environ={},
        metadata_fetcher=lambda: CloudLocation("gcp", "europe-west9"),
    )
    assert r.method == "cloud-metadata"
    assert r.intensity.zone == "gcp:europe-west9→FR"
    assert r.detail == "metadata gcp:europe-west9"


def test_env_wins_over_metadata() -> None:
    r = resolve_intensity(
        CarbonConfig(cloud_metadata=True),
        environ={"AWS_REGION": "us-east-1"},
        metadata_fetcher=_never,
    )
    assert r.method == "cloud-env"


def test_metadata_failures_fall_through(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")

    def boom() -> CloudLocation | None:
        raise OSError("no route")

    cfg = CarbonConfig(cloud_metadata=True)
    assert resolve_intensity(cfg, environ={}, metadata_fetcher=boom).method == "world-average"
    assert resolve_intensity(cfg, environ={}, metadata_fetcher=lambda: None).method == (
        "world-average"
    )
    caplog.clear()
    r = resolve_intensity(
        cfg, environ={}, metadata_fetcher=lambda: CloudLocation("aws", "moon-south-1")
    )
    assert r.method == "world-average"
    assert "moon-south-1" in caplog.text


def test_metadata_client_aws_imdsv2(imds: MetadataServer) -> None:
    imds.responder = aws_responder()
    assert client(imds, "aws")() == CloudLocation("aws", "eu-west-3")
    (m1, p1, _h1), (m2, p2, h2) = imds.requests
    assert (m1, p1) == ("PUT", "/latest/api/token")
    assert (m2, p2) == ("GET", "/latest/meta-data/placement/region")
    assert h2["x-aws-ec2-metadata-token"] == "AQAEAtoken=="


def test_metadata_client_gcp(imds: MetadataServer) -> None:
    imds.responder = gcp_responder()
    assert client(imds, "gcp")() == CloudLocation("gcp", "europe-west9")
    assert imds.requests[0][2]["metadata-flavor"] == "Google"


def test_metadata_client_azure(imds: MetadataServer) -> None:
    imds.responder = azure_responder()
    assert client(imds, "azure")() == CloudLocation("azure", "westeurope")
    assert imds.requests[0][2]["metadata"] == "true"


def test_metadata_client_all_probes_pick_the_answering_cloud(imds: MetadataServer) -> None:
    imds.responder = azure_responder(b"francecentral")
    assert client(imds)() == CloudLocation("azure", "francecentral")
    imds.responder = gcp_responder()
    assert client(imds)() == CloudLocation("gcp", "europe-west9")


@pytest.mark.parametrize(
    "responder",
    [
        aws_responder(b"not a region!"),
        aws_responder(b"x" * 5000),
        gcp_responder(b"projects/1/zones/nozone"),
        azure_responder(b"West Europe<script>"),
        lambda m, p, h: (200, {}, b"projects/1/zones/europe-west9-a"),  # no Metadata-Flavor
        lambda m, p, h: (200, {}, "\u2603".encode()),
        lambda m, p, h: (200, {}, b"\xff\xfe"),
    ],
)
def test_metadata_client_rejects_garbage(imds: MetadataServer, responder: Responder) -> None:
    imds.responder = responder
    assert client(imds)() is None


def test_metadata_client_aws_bad_token(imds: MetadataServer) -> None:
    imds.responder = lambda m, p, h: (200, {}, b"\x01bad")
    assert client(imds, "aws")() is None


def test_metadata_client_is_time_boxed(imds: MetadataServer) -> None:
    imds.delay = 1.5
    imds.responder = azure_responder()
    started = time.monotonic()
    assert client(imds, timeout=0.3)() is None
    assert time.monotonic() - started < 1.0


def test_metadata_client_validation() -> None:
    with pytest.raises(ValueError):
        CloudMetadataClient(timeout=2.0)
    with pytest.raises(ValueError):
        CloudMetadataClient(timeout=0)
    with pytest.raises(ValueError):
        CloudMetadataClient(aws_url="file:///etc/hosts")
    assert CloudMetadataClient(providers=())() is None
    assert CloudMetadataClient(providers=("ibm",)).providers == ()


def test_resolve_with_metadata_server(imds: MetadataServer) -> None:
    imds.responder = aws_responder(b"ca-central-1")
    r = resolve_intensity(
        CarbonConfig(cloud_metadata=True), environ={}, metadata_fetcher=client(imds)
    )
    assert r.method == "cloud-metadata"
    assert r.intensity.zone == "aws:ca-central-1→CA-QC"


def test_default_client_used_when_opted_in(monkeypatch: pytest.MonkeyPatch) -> None:
    from hf_eco2ai.carbon import location

    made: list[CloudMetadataClient] = []

    class Fake(CloudMetadataClient):
        def __call__(self) -> CloudLocation | None:
            made.append(self)
            return CloudLocation("azure", "uksouth")

    monkeypatch.setattr(location, "CloudMetadataClient", Fake)
    r = resolve_intensity(CarbonConfig(cloud_metadata=True), environ={})
    assert r.intensity.zone == "azure:uksouth→GB"
    assert made
    assert made[0].timeout <= 1.0


# --------------------------------------------------------------------------- live providers
def test_live_uk_provider_wraps_table_value(imds: MetadataServer) -> None:
    payload = {"data": [{"intensity": {"forecast": 120, "actual": 111, "index": "low"}}]}
    imds.responder = lambda m, p, h: (
        (200, {}, json.dumps(payload).encode()) if p == "/intensity" else (404, {}, b"")
    )
    cfg = CarbonConfig(country="GB", carbon_provider="uk-carbon-intensity")
    r = resolve_intensity(cfg, environ={}, provider_base_url=imds.url, background=False)
    assert isinstance(r, Resolution)
    assert r.live == "uk-carbon-intensity"
    assert isinstance(r.provider, UKCarbonIntensityProvider)
    assert r.provider.fallback == r.intensity == tables.country_intensity("GB")
    assert r.current() == r.intensity  # nothing fetched yet
    r.provider.maybe_refresh(0.0)
    assert r.current() == CarbonIntensity(111.0, zone="GB", source="uk-carbon-intensity")
    r.provider.close()


def test_live_uk_with_gb_region() -> None:
    cfg = CarbonConfig(country="GB", region="13", carbon_provider="uk-carbon-intensity")
    r = resolve_intensity(cfg, environ={})
    assert isinstance(r.provider, UKCarbonIntensityProvider)
    assert r.provider.zone == "GB-region-13"


def test_live_uk_outside_gb_keeps_table(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")
    r = resolve_intensity(
        CarbonConfig(country="FR", carbon_provider="uk-carbon-intensity"), environ={}
    )
    assert r.live is None
    assert isinstance(r.provider, StaticIntensity)
    assert "Great Britain" in caplog.text


def test_live_electricitymaps_zone_choice() -> None:
    env = {"ELECTRICITYMAPS_API_TOKEN": "t0ken"}
    fr = resolve_intensity(
        CarbonConfig(country="FR", carbon_provider="electricitymaps"), environ=env
    )
    assert isinstance(fr.provider, ElectricityMapsProvider)
    assert fr.provider.zone == "FR"
    on = resolve_intensity(
        CarbonConfig(country="CA", region="ON", carbon_provider="electricitymaps"), environ=env
    )
    assert isinstance(on.provider, ElectricityMapsProvider)
    assert on.provider.zone == "CA-ON"
    cloud = resolve_intensity(
        CarbonConfig(carbon_provider="electricitymaps"), environ=env | {"AWS_REGION": "eu-north-1"}
    )
    assert isinstance(cloud.provider, ElectricityMapsProvider)
    assert cloud.provider.zone == "SE-SE3"
    ba = resolve_intensity(
        CarbonConfig(country="US", region="US-CAL-CISO", carbon_provider="electricitymaps"),
        environ=env,
    )
    assert isinstance(ba.provider, ElectricityMapsProvider)
    assert ba.provider.zone == "US-CAL-CISO"
    assert ba.intensity == tables.country_intensity("US")


def test_live_electricitymaps_without_token(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")
    r = resolve_intensity(CarbonConfig(country="DE", carbon_provider="electricitymaps"), environ={})
    assert r.live is None
    assert "ELECTRICITYMAPS_API_TOKEN" in caplog.text


def test_eco2ai_table_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "eco2ai_table_path", lambda: None)
    with pytest.raises(ConfigError) as info:
        resolve_intensity(CarbonConfig(country="FR", carbon_table="eco2ai"), environ={})
    assert "OTEL_PYTHON_HF_ECO2AI_CARBON_TABLE" in str(info.value)
    assert "eco2ai" in str(info.value)
