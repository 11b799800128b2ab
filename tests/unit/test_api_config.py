"""The plant's ``api:`` section: loopback by default, TLS required off it, and the
documentation table in docs/config.md kept equal to the model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from petra.config import ConfigErrors, load_plant_text
from petra.config._api import ApiConfig, ApiLockoutConfig, ApiTlsConfig, split_listen
from petra.config._schema import plant_json_schema

ROOT = Path(__file__).resolve().parents[2]


def _api(text: str) -> ApiConfig:
    plant = load_plant_text(f"instance: x\napi: {text}\n", "p.yaml")
    assert plant.config.api is not None
    return plant.config.api


def test_defaults_listen_on_loopback_without_tls() -> None:
    cfg = _api("{}")
    assert cfg.listen == "127.0.0.1:8480" and cfg.tls is None
    assert load_plant_text("instance: x\n", "p.yaml").config.api is None  # no api: no process


@pytest.mark.parametrize("listen", ["0.0.0.0:8443", "192.168.1.5:80", "[::]:8443",
                                    "plc.example:443"])
def test_a_network_address_needs_tls(listen: str) -> None:
    with pytest.raises(ConfigErrors, match="needs tls"):
        _api(f'{{listen: "{listen}"}}')
    cfg = _api(f'{{listen: "{listen}", tls: {{cert_file: c.pem, key_file: k.pem}}}}')
    assert cfg.tls is not None and cfg.tls.min_version == "1.2"


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "127.0.0.2:9000", "[::1]:8480",
                                    "localhost:8480"])
def test_loopback_addresses(listen: str) -> None:
    assert _api(f'{{listen: "{listen}"}}').listen == listen


@pytest.mark.parametrize(("text", "words"), [
    ("{listen: nope}", "HOST:PORT"),
    ('{listen: "127.0.0.1:70000"}', "outside"),
    ("{tls: {cert_file: c, key_file: k, client_cert: required}}", "client_ca_file"),
    ("{token_secret_file: a, token_secret_env: B}", "not both"),
    ("{token_ttl_s: 1h, refresh_ttl_s: 10min}", "shorter"),
    ("{tls: {cert_file: c, key_file: k, min_version: '1.1'}}", "min_version"),
    ("{users: []}", "users"),
])
def test_bad_api_sections(text: str, words: str) -> None:
    with pytest.raises(ConfigErrors, match=words):
        _api(text)


def test_durations_and_roles() -> None:
    cfg = _api("{token_ttl_s: 5min, lockout: {lockout_s: 1h}}")
    assert cfg.token_ttl_s == 300 and cfg.lockout.lockout_s == 3600
    plant = load_plant_text("instance: x\nmqtt: {commands: {roles: {scada: Operator, '*': "
                            "viewer}}}\n", "p.yaml")
    assert plant.config.mqtt is not None and plant.config.mqtt.commands is not None
    assert plant.config.mqtt.commands.roles == {"scada": "operator", "*": "viewer"}
    with pytest.raises(ConfigErrors, match="unknown role"):
        load_plant_text("instance: x\nmqtt: {commands: {roles: {a: boss}}}\n", "p.yaml")


def test_split_listen() -> None:
    assert split_listen("[::1]:80") == ("::1", 80)
    assert split_listen("127.0.0.1:0") == ("127.0.0.1", 0)


def test_docs_tables_match_the_models() -> None:
    """docs/config.md documents every key of the api section, with its default."""
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    schema = plant_json_schema()["$defs"]
    for model in (ApiConfig, ApiTlsConfig, ApiLockoutConfig):
        m = re.search(rf"<!-- api-model: {model.__name__} -->\n((?:\|.*\n)+)", text)
        assert m is not None, f"no table for {model.__name__} in docs/config.md"
        keys = {re.fullmatch(r"`([^`]+)`", line.split("|")[1].strip()).group(1)  # type: ignore[union-attr]
                for line in m.group(1).splitlines()[2:]}
        assert keys == set(schema[model.__name__]["properties"]), model.__name__
