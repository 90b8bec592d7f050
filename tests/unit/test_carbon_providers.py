"""Live providers against a local HTTP server on 127.0.0.1 (no outside network)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hf_eco2ai.carbon.intensity import CarbonIntensity, IntensityProvider
from hf_eco2ai.carbon.providers import (
    ElectricityMapsProvider,
    LiveIntensityProvider,
    ProviderError,
    UKCarbonIntensityProvider,
    make_provider,
    uk_endpoint,
)

TOKEN = "tok-SECRET-1234567890"
FALLBACK = CarbonIntensity(381.0, zone="DE", source="table:owid@2023")
GB_FALLBACK = CarbonIntensity(237.6, zone="GB", source="table:owid@2023")

EM_OK = {
    "zone": "DE",
    "carbonIntensity": 302,
    "datetime": "2019-05-21T00:00:00.000Z",
    "updatedAt": "2019-05-21T00:21:04.000Z",
    "createdAt": "2019-05-18T00:24:21.000Z",
    "emissionFactorType": "lifecycle",
    "isEstimated": False,
    "estimationMethod": None,
}
UK_NATIONAL = {
    "data": [
        {
            "from": "2018-01-20T12:00Z",
            "to": "2018-01-20T12:30Z",
            "intensity": {"forecast": 266, "actual": 263, "index": "moderate"},
        }
    ]
}
UK_REGIONAL = {
    "data": [
        {
            "regionid": 13,
            "dnoregion": "UKPN London",
            "shortname": "London",
            "data": [
                {
                    "from": "2018-05-15T11:30Z",
                    "to": "2018-05-15T12:00Z",
                    "intensity": {"forecast": 189, "index": "moderate"},
                    "generationmix": [{"fuel": "gas", "perc": 43.6}],
                }
            ],
        }
    ]
}


@dataclass
class Route:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    gate: threading.Event | None = None  # the response waits until the test sets it
    trickle: float = 0.0  # seconds between single bytes of the body
    content_length: bool = True


class Server:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def _serve(self) -> None:
                server.requests.append(
                    (self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                route = server.routes.get(self.path) or Route(404, b'{"error": "not found"}')
                if route.gate is not None:
                    route.gate.wait(10)
                if route.delay:
                    time.sleep(route.delay)
                try:
                    self.send_response(route.status)
                    for key, value in route.headers.items():
                        self.send_header(key, value)
                    if route.content_length and "Content-Length" not in route.headers:
                        self.send_header("Content-Length", str(len(route.body)))
                    self.end_headers()
                    if route.trickle:
                        for byte in route.body:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(route.trickle)
                    else:
                        self.wfile.write(route.body)
                except OSError:
                    pass

            do_GET = do_PUT = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def json(self, path: str, payload: object, status: int = 200) -> None:
        self.routes[path] = Route(status, json.dumps(payload).encode())

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def _shared_server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def server(_shared_server: Server) -> Server:
    _shared_server.routes.clear()
    _shared_server.requests.clear()
    return _shared_server


EM_PATH = "/v3/carbon-intensity/latest?zone=DE"


def em(server: Server, **kwargs: object) -> ElectricityMapsProvider:
    options: dict[str, object] = {"base_url": server.url, "background": False, "timeout": 0.5}
    options.update(kwargs)
    return ElectricityMapsProvider("DE", TOKEN, fallback=FALLBACK, **options)  # type: ignore[arg-type]


def uk(server: Server, region: str | None = None, **kwargs: object) -> UKCarbonIntensityProvider:
    options: dict[str, object] = {"base_url": server.url, "background": False, "timeout": 0.5}
    options.update(kwargs)
    return UKCarbonIntensityProvider(region, fallback=GB_FALLBACK, **options)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- Electricity Maps
def test_electricitymaps_fetch(server: Server) -> None:
    server.json(EM_PATH, EM_OK)
    provider = em(server)
    assert isinstance(provider, IntensityProvider)
    assert provider.current() is FALLBACK
    provider.maybe_refresh(100.0)
    assert provider.current() == CarbonIntensity(302.0, zone="DE", source="electricitymaps")
    assert provider.errors == 0
    assert provider.fetches == 1
    assert provider.last_error is None
    method, path, headers = server.requests[0]
    assert (method, path) == ("GET", EM_PATH)
    assert headers["auth-token"] == TOKEN


def test_refresh_interval_is_respected(server: Server) -> None:
    server.json(EM_PATH, EM_OK)
    provider = em(server, refresh_interval=60.0)
    provider.maybe_refresh(1000.0)
    provider.maybe_refresh(1001.0)
    provider.maybe_refresh(1059.9)
    assert len(server.requests) == 1
    provider.maybe_refresh(1060.0)
    assert len(server.requests) == 2


def test_background_fetch(server: Server) -> None:
    gate = threading.Event()
    server.routes[EM_PATH] = Route(body=json.dumps(EM_OK).encode(), gate=gate)
    provider = em(server, background=True)
    provider.maybe_refresh(0.0)
    provider.maybe_refresh(10_000.0)  # the first fetch is held in flight: no second one
    gate.set()
    provider.wait(5)
    assert provider.current().value == 302.0
    assert len(server.requests) == 1


def test_slow_background_fetch_does_not_block(server: Server) -> None:
    gate = threading.Event()
    server.routes[EM_PATH] = Route(body=json.dumps(EM_OK).encode(), gate=gate)
    provider = em(server, background=True, timeout=5.0)
    provider.maybe_refresh(0.0)  # returns while the server still holds the answer back
    assert not gate.is_set()
    assert provider.current() is FALLBACK
    gate.set()
    provider.wait(5)
    assert provider.current().value == 302.0


def test_close_stops_refreshing(server: Server) -> None:
    server.json(EM_PATH, EM_OK)
    provider = em(server)
    provider.close()
    provider.close()
    provider.maybe_refresh(0.0)
    assert not server.requests
    assert provider.current() is FALLBACK
    assert provider.refresh_now() is False  # fetched, but not applied after close
    assert provider.current() is FALLBACK


@pytest.mark.parametrize(
    ("route", "kind"),
    [
        (Route(500, b"oops"), "http-500"),
        (Route(503, b"{}"), "http-503"),
        (Route(401, b'{"error": "bad token"}'), "auth"),
        (Route(403, b"denied"), "auth"),
        (Route(429, b"slow down"), "rate-limited"),
        (Route(404, b"{}"), "http-404"),
        (Route(body=b"{not json"), "json"),
        (Route(body=b"\xff\xfe"), "json"),
        (Route(body=b'{"zone": "DE", "carbonIntensity": NaN}'), "json"),
        (Route(body=b'{"zone": "DE", "carbonIntensity": Infinity}'), "json"),
        (Route(body=b"[1, 2]"), "schema"),
        (Route(body=b'{"zone": "DE"}'), "schema"),
        (Route(body=b'{"zone": "FR", "carbonIntensity": 50}'), "schema"),
        (Route(body=b'{"zone": 5, "carbonIntensity": 50}'), "schema"),
        (Route(body=b'{"zone": "DE", "carbonIntensity": "302"}'), "schema"),
        (Route(body=b'{"zone": "DE", "carbonIntensity": true}'), "schema"),
        (Route(body=b'{"zone": "DE", "carbonIntensity": null}'), "schema"),
        (Route(body=b'{"zone": "DE", "carbonIntensity": [302]}'), "schema"),
        (Route(body=b'{"zone": "DE", "carbonIntensity": {"value": 302}}'), "schema"),
        (Route(body=b'{"zone": "DE", "carbonIntensity": -5}'), "range"),
        (Route(body=b'{"zone": "DE", "carbonIntensity": 2500.5}'), "range"),
        (Route(body=b'{"zone": "DE", "carbonIntensity": 1e308}'), "range"),
        (Route(body=b'{"zone": "DE", "carbonIntensity": 300, "unit": "lb/MWh"}'), "units"),
        (Route(body=b'{"zone": "DE", "carbonIntensity": 300, "unit": 5}'), "units"),
        (Route(body=b"{}" + b" " * 70_000), "too-large"),
        (Route(body=b" " * 70_000 + b"{}", content_length=False), "too-large"),
        (Route(301, b"", headers={"Location": "/elsewhere"}), "http-301"),
    ],
)
def test_electricitymaps_failures(
    server: Server, route: Route, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")
    server.routes[EM_PATH] = route
    provider = em(server)
    provider.maybe_refresh(0.0)
    assert provider.current() is FALLBACK
    assert provider.errors == 1
    assert provider.last_error == kind
    assert len(caplog.records) == 1
    assert kind in caplog.records[0].getMessage()
    assert "/elsewhere" not in [path for _, path, _ in server.requests]


def test_valid_unit_and_missing_zone_accepted(server: Server) -> None:
    server.json(EM_PATH, {"carbonIntensity": 0, "unit": "gCO2eq/kWh"})
    provider = em(server)
    assert provider.refresh_now() is True
    assert provider.current().value == 0.0


def test_failure_logged_once_per_kind_and_counted(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")
    server.routes[EM_PATH] = Route(500, b"")
    provider = em(server, refresh_interval=60.0)
    for i in range(4):
        provider.maybe_refresh(i * 60.0)
    assert provider.errors == 4
    assert len(caplog.records) == 1
    server.routes[EM_PATH] = Route(body=b"garbage")
    provider.maybe_refresh(300.0)
    provider.maybe_refresh(360.0)
    assert provider.errors == 6
    assert len(caplog.records) == 2


def test_keeps_last_good_then_falls_back_when_stale(server: Server) -> None:
    server.json(EM_PATH, EM_OK)
    provider = em(server, refresh_interval=60.0, max_age=200.0)
    provider.maybe_refresh(0.0)
    assert provider.current().value == 302.0
    server.routes[EM_PATH] = Route(500, b"")
    provider.maybe_refresh(60.0)
    provider.maybe_refresh(180.0)
    assert provider.current().value == 302.0  # last good value kept
    provider.maybe_refresh(240.0)  # last good is 240 s old > max_age
    assert provider.current() is FALLBACK
    server.json(EM_PATH, EM_OK)
    provider.maybe_refresh(300.0)
    assert provider.current().value == 302.0
    assert provider.last_error is None
    assert provider.errors == 3


def test_default_max_age() -> None:
    provider = ElectricityMapsProvider("DE", TOKEN, fallback=FALLBACK, refresh_interval=60)
    assert provider.max_age == 3600.0
    provider = ElectricityMapsProvider("DE", TOKEN, fallback=FALLBACK, refresh_interval=7200)
    assert provider.max_age == 21600.0


def test_slow_response_times_out(server: Server) -> None:
    server.routes[EM_PATH] = Route(body=json.dumps(EM_OK).encode(), delay=1.0)
    provider = em(server, timeout=0.2)
    started = time.monotonic()
    provider.maybe_refresh(0.0)
    assert time.monotonic() - started < 0.9
    assert provider.last_error == "timeout"
    assert provider.current() is FALLBACK


def test_trickled_body_times_out(server: Server) -> None:
    body = json.dumps(EM_OK).encode()
    server.routes[EM_PATH] = Route(body=body, trickle=0.05, content_length=False)
    provider = em(server, timeout=0.3)
    started = time.monotonic()
    provider.maybe_refresh(0.0)
    assert time.monotonic() - started < 1.0
    assert provider.last_error == "timeout"


def test_connection_refused_is_network_error() -> None:
    srv = Server()
    url = srv.url
    srv.close()
    provider = ElectricityMapsProvider(
        "DE", TOKEN, fallback=FALLBACK, base_url=url, background=False, timeout=0.5
    )
    provider.maybe_refresh(0.0)
    assert provider.last_error == "network"


def test_parser_bug_is_contained(server: Server) -> None:
    class Broken(UKCarbonIntensityProvider):
        def _parse(self, payload: object) -> CarbonIntensity:
            raise RuntimeError("bug")

    server.json("/intensity", UK_NATIONAL)
    provider = Broken(None, fallback=GB_FALLBACK, base_url=server.url, background=False)
    provider.maybe_refresh(0.0)
    assert provider.last_error == "internal"
    assert provider.current() is GB_FALLBACK


# --------------------------------------------------------------------------- secrets
def test_token_never_leaks(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    provider = em(server)
    for route in (
        Route(401, TOKEN.encode()),
        Route(500, b""),
        Route(body=b"{bad"),
        Route(body=json.dumps({"zone": "DE", "carbonIntensity": TOKEN}).encode()),
        Route(body=json.dumps({"zone": TOKEN, "carbonIntensity": 1}).encode()),
    ):
        server.routes[EM_PATH] = route
        provider.refresh_now()
    server.json(EM_PATH, EM_OK)
    provider.refresh_now()
    assert provider.errors == 5
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(provider)
    assert TOKEN not in str(provider)
    assert TOKEN not in repr(provider.current())
    assert TOKEN not in repr(vars(provider))  # name-mangled attribute holds it privately
    assert "<set>" in repr(provider)


def test_token_scrubbed_from_failure_details(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")
    provider = ElectricityMapsProvider("DE", TOKEN, fallback=FALLBACK, background=False)
    provider._failed(ProviderError("network", f"detail with {TOKEN}"), 0.0)
    assert TOKEN not in caplog.text
    assert "<token>" in caplog.text


@pytest.mark.parametrize("token", ["", "   ", "bad token", "tok\r\nX-Evil: 1", "tök"])
def test_invalid_token_rejected_without_echo(token: str) -> None:
    with pytest.raises(ValueError) as info:
        ElectricityMapsProvider("DE", token, fallback=FALLBACK)
    if token.strip():
        assert token not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "ftp://example.org"},
        {"base_url": "file:///etc/passwd"},
        {"base_url": "http://"},
        {"timeout": 0},
        {"refresh_interval": -1},
        {"max_bytes": 0},
    ],
)
def test_constructor_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        UKCarbonIntensityProvider(None, fallback=GB_FALLBACK, **kwargs)  # type: ignore[arg-type]


def test_invalid_zone() -> None:
    with pytest.raises(ValueError):
        ElectricityMapsProvider("DE?x=1", TOKEN, fallback=FALLBACK)


# --------------------------------------------------------------------------- UK Carbon Intensity
def test_uk_national_prefers_actual(server: Server) -> None:
    server.json("/intensity", UK_NATIONAL)
    provider = uk(server)
    provider.maybe_refresh(0.0)
    assert provider.current() == CarbonIntensity(263.0, zone="GB", source="uk-carbon-intensity")
    assert "uk-carbon-intensity" in repr(provider) or "GB" in repr(provider)


def test_uk_national_forecast_when_no_actual(server: Server) -> None:
    payload = json.loads(json.dumps(UK_NATIONAL))
    payload["data"][0]["intensity"]["actual"] = None
    server.json("/intensity", payload)
    provider = uk(server)
    provider.maybe_refresh(0.0)
    assert provider.current().value == 266.0


@pytest.mark.parametrize(
    ("region", "path", "zone"),
    [
        ("13", "/regional/regionid/13", "GB-region-13"),
        ("RG10 9AB", "/regional/postcode/RG10", "GB-RG10"),
        ("sw1a", "/regional/postcode/SW1A", "GB-SW1A"),
        ("Scotland", "/regional/scotland", "GB-scotland"),
    ],
)
def test_uk_regional(server: Server, region: str, path: str, zone: str) -> None:
    server.json(path, UK_REGIONAL)
    provider = uk(server, region)
    provider.maybe_refresh(0.0)
    assert provider.current() == CarbonIntensity(189.0, zone=zone, source="uk-carbon-intensity")
    assert server.requests[0][1] == path


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({}, "schema"),
        ({"data": []}, "schema"),
        ({"data": {}}, "schema"),
        ({"data": ["x"]}, "schema"),
        ({"data": [{"from": "x"}]}, "schema"),
        ({"data": [{"intensity": 5}]}, "schema"),
        ({"data": [{"intensity": {"forecast": "high"}}]}, "schema"),
        ({"data": [{"intensity": {"forecast": None, "actual": None}}]}, "schema"),
        ({"data": [{"intensity": {"forecast": -1}}]}, "range"),
        ({"data": [{"intensity": {"actual": 99999}}]}, "range"),
        ({"data": [{"regionid": 1, "data": []}]}, "schema"),
    ],
)
def test_uk_garbage(server: Server, payload: object, kind: str) -> None:
    server.json("/intensity", payload)
    provider = uk(server)
    provider.maybe_refresh(0.0)
    assert provider.current() is GB_FALLBACK
    assert provider.last_error == kind


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        (None, ("/intensity", "GB")),
        ("", ("/intensity", "GB")),
        ("uk", ("/intensity", "GB")),
        ("17", ("/regional/regionid/17", "GB-region-17")),
        ("wales", ("/regional/wales", "GB-wales")),
    ],
)
def test_uk_endpoint(region: str | None, expected: tuple[str, str]) -> None:
    assert uk_endpoint(region) == expected


@pytest.mark.parametrize("region", ["0", "18", "Narnia", "12345", "../../etc"])
def test_uk_endpoint_invalid(region: str) -> None:
    with pytest.raises(ValueError):
        uk_endpoint(region)


# --------------------------------------------------------------------------- factory
def test_make_provider_none() -> None:
    assert make_provider("none", fallback=FALLBACK, zone="DE") is None
    with pytest.raises(ValueError):
        make_provider("watttime", fallback=FALLBACK, zone="DE")


def test_make_electricitymaps(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")
    assert make_provider("electricitymaps", fallback=FALLBACK, zone="DE", environ={}) is None
    assert "ELECTRICITYMAPS_API_TOKEN" in caplog.text
    env = {"ELECTRICITYMAPS_API_TOKEN": TOKEN}
    provider = make_provider("electricitymaps", fallback=FALLBACK, zone="DE", environ=env)
    assert isinstance(provider, ElectricityMapsProvider)
    assert provider.zone == "DE"
    assert provider.current() is FALLBACK
    explicit = make_provider(
        "electricitymaps", fallback=FALLBACK, zone="US", region="US-CAL-CISO", environ=env
    )
    assert isinstance(explicit, ElectricityMapsProvider)
    assert explicit.zone == "US-CAL-CISO"
    caplog.clear()
    assert make_provider("electricitymaps", fallback=FALLBACK, zone="US-CA", environ=env) is None
    assert "US-CAL-CISO" in caplog.text
    caplog.clear()
    bad = make_provider("electricitymaps", fallback=FALLBACK, zone="DE", region="a b", environ=env)
    assert bad is None
    assert "disabled" in caplog.text
    assert TOKEN not in caplog.text


def test_make_electricitymaps_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", TOKEN)
    assert isinstance(
        make_provider("electricitymaps", fallback=FALLBACK, zone="FR"), ElectricityMapsProvider
    )


def test_make_uk(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hf_eco2ai.carbon")
    provider = make_provider("uk-carbon-intensity", fallback=GB_FALLBACK, zone="GB")
    assert isinstance(provider, UKCarbonIntensityProvider)
    assert provider.zone == "GB"
    regional = make_provider("uk-carbon-intensity", fallback=GB_FALLBACK, zone="GB", region="13")
    assert isinstance(regional, UKCarbonIntensityProvider)
    assert regional.zone == "GB-region-13"
    assert make_provider("uk-carbon-intensity", fallback=FALLBACK, zone="DE") is None
    assert "Great Britain only" in caplog.text
    caplog.clear()
    bad = make_provider("uk-carbon-intensity", fallback=GB_FALLBACK, zone="GB", region="Narnia")
    assert bad is None
    assert "disabled" in caplog.text


def test_base_class_is_abstract() -> None:
    with pytest.raises(TypeError):
        LiveIntensityProvider(FALLBACK)  # type: ignore[abstract]
