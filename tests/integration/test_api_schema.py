"""The shipped OpenAPI description against the live server, with schemathesis.

Every operation of ``/api/v1/openapi.json`` is called with generated requests, valid
and invalid, over HTTPS with an admin API key; schemathesis checks each answer: never
a 5xx, a status code and content type the description lists, a body that matches its
schema, invalid input refused with a 4xx. Bounded (a few examples per operation, no
shrinking deadline) so the suite stays quick. The segment's values only change
through valid writes, and the admin can neither be removed nor demoted (last admin).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from api_peers import LiveApi, alarms_extra, start_alarm_manager, stop_process
from driver_peers import Certs
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.result import Ok

from petra.api import openapi, served_routes


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[LiveApi]:
    tmp = tmp_path_factory.mktemp("schema")
    api = LiveApi(tmp, certs=certs, extra=alarms_extra(tmp, wait_s=10),
                  lockout="{user_failures: 1000, address_failures: 100000, lockout_s: 1}")
    api.start()
    alarms = start_alarm_manager(api)  # the alarm endpoints answer from a real one
    yield api
    stop_process(alarms)
    api.close()


@pytest.fixture(scope="module")
def http(live: LiveApi, certs: Certs) -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify=
    session.verify = str(certs.ca)
    session.headers["Authorization"] = f"Bearer {live.keys['admin']}"
    yield session
    session.close()


@pytest.fixture(scope="module")
def api_schema(live: LiveApi, http: requests.Session) -> Any:
    spec = http.get(f"{live.base}/api/v1/openapi.json", timeout=30).json()
    return schemathesis.openapi.from_dict(spec)


def test_the_description_names_every_route(live: LiveApi, api_schema: Any,
                                           http: requests.Session) -> None:
    spec = http.get(f"{live.base}/api/v1/openapi.json", timeout=30).json()
    assert spec == openapi()  # what is tested below is what the server ships
    described = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    from petra.api import build_app, make_context
    from petra.config import load_plant

    cfg = load_plant(live.plant).config.api
    assert cfg is not None
    app = build_app(make_context(cfg, live.seg, live.instance, live.plant.parent))
    assert described == set(served_routes(app))


# schemathesis' own pytest plugin does not run under pytest 9 (it reads a private
# attribute pytest dropped), so the operations are parametrized here and each one runs
# a Hypothesis test over schemathesis' strategy: the same generation and checks. The
# WebSocket upgrade is left out (schemathesis speaks HTTP; test_api.py and
# test_api_fuzz.py drive the WebSocket).
# A schema-valid request may still be refused for what the schema cannot say: a
# value outside the signal's min/max (422), a user that exists (409), no supervisor
# to reload (503), an unknown alarm (404), an action the alarm manager refuses in the
# alarm's current state (409). Those are the statuses a valid request may get besides
# 2xx; the SMS webhook answers 403 without Twilio's signature.
# Invalid data may also be refused as too large (413): a list of 1001 alarm names of up
# to 256 characters each is past max_body_bytes before anything reads it.
CONFIG = schemathesis.Config.from_dict({"checks": {
    "positive_data_acceptance": {
        "expected-statuses": ["2xx", "401", "403", "404", "409", "422", "429", "503"]},
    "negative_data_rejection": {
        "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413",
                              "415", "422", "428", "429"]}}})
SCHEMA = schemathesis.openapi.from_dict(openapi(), config=CONFIG)
OPERATIONS = [r.ok() for r in SCHEMA.get_all_operations() if isinstance(r, Ok)]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def _has_input(op: Any) -> bool:
    """Negative cases need something to break: parameters or a body."""
    spec = openapi()["paths"][op.path][op.method.lower()]
    return bool(spec.get("parameters") or spec.get("requestBody"))


CASES = [(op, mode) for op in OPERATIONS if not op.path.endswith("/ws")
         for mode in MODES if mode is GenerationMode.POSITIVE or _has_input(op)]


@pytest.mark.parametrize(("operation", "mode"), CASES,
                         ids=[f"{op.label} {mode.value}" for op, mode in CASES])
def test_api_conforms_to_its_description(operation: Any, mode: GenerationMode,
                                         live: LiveApi, http: requests.Session) -> None:
    seen: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=10, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        resp = case.call_and_validate(base_url=live.base, session=http, verify=http.verify)
        seen.append(resp.status_code)

    run()
    assert seen and all(code < 500 for code in seen)
