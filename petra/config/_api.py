"""The plant's ``api:`` section: the HTTP(S)/WebSocket API process and its security.

Present (even empty, ``api: {}``) means the supervisor runs the ``api`` process; absent
means no API. Loopback is the default listen address; any other address needs
``tls`` (certificate and key; TLS 1.2 or newer), so a plant can never serve its API
in clear text on a network by accident. Relative paths are relative to the plant
file's directory. Secrets (the token signing key) come from a file, a systemd
credential or an environment variable, never from this file.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from petra.config._seconds import Seconds
from petra.types import AccessRole

LOOPBACK_NAMES = ("localhost",)
DEFAULT_LISTEN = "127.0.0.1:8480"


def _role(value: object) -> str:
    try:
        return AccessRole.parse(value).label
    except ValueError as exc:
        raise ValueError(str(exc)) from None


RoleName = Annotated[Literal["viewer", "operator", "engineer", "admin"],
                     BeforeValidator(_role)]


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:8480"`` -> (host, port); ``"[::1]:8480"`` -> ("::1", 8480)."""
    host, sep, port_s = listen.rpartition(":")
    if not sep or not host or not port_s.isdigit():
        raise ValueError(f"listen must be HOST:PORT, got {listen!r}")
    port = int(port_s)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ApiTlsConfig(_Model):
    """The API's TLS server side: TLS 1.2 or newer, the ssl module's modern defaults."""

    cert_file: str = Field(min_length=1, description="server certificate chain (PEM)")
    key_file: str = Field(min_length=1, description="private key of the certificate (PEM)")
    client_ca_file: str | None = Field(
        default=None, description="CA that signs client certificates (PEM)")
    client_cert: Literal["none", "optional", "required"] = Field(
        default="none", description="ask clients for a certificate signed by client_ca_file")
    min_version: Literal["1.2", "1.3"] = Field(default="1.2", description="lowest TLS version")

    @model_validator(mode="after")
    def _client_ca(self) -> ApiTlsConfig:
        if self.client_cert != "none" and self.client_ca_file is None:
            raise ValueError(f"client_cert: {self.client_cert} needs client_ca_file")
        return self


class ApiLockoutConfig(_Model):
    """Brute-force protection of logins and API keys."""

    user_failures: int = Field(default=5, ge=1, le=1000,
                               description="failures of one user name before it is locked")
    address_failures: int = Field(default=20, ge=1, le=100_000,
                                  description="failures from one address before it is locked")
    window_s: Seconds = Field(default=900.0, gt=0, le=86400,
                              description="failures older than this are forgotten")
    lockout_s: Seconds = Field(default=900.0, gt=0, le=86400, description="how long a lock lasts")


class ApiConfig(_Model):
    """The ``api:`` section."""

    listen: str = Field(default=DEFAULT_LISTEN, description="HOST:PORT; a non-loopback "
                        "host needs tls; port 0 picks a free port")
    tls: ApiTlsConfig | None = Field(default=None, description="HTTPS; required off loopback")
    users_file: str | None = Field(
        default=None, description="the users file; default $PETRA_USERS_FILE or "
        "/etc/petra/users.json")
    audit_file: str | None = Field(
        default=None, description="the audit log; default <data dir>/audit/audit.log")
    audit_rotate_bytes: int = Field(default=16 * 1024 * 1024, ge=4096, le=1 << 40,
                                    description="rotate the audit log past this size")
    audit_keep: int = Field(default=10, ge=1, le=1000, description="rotated audit files kept")
    token_ttl_s: Seconds = Field(default=900.0, ge=10, le=86400,
                                 description="lifetime of an access token")
    refresh_ttl_s: Seconds = Field(default=43200.0, ge=60, le=30 * 86400,
                                   description="lifetime of a refresh token (single use)")
    token_secret_file: str | None = Field(
        default=None, description="file holding the token signing key (>= 32 bytes)")
    token_secret_env: str | None = Field(
        default=None, description="environment variable holding the signing key")
    lockout: ApiLockoutConfig = Field(default_factory=ApiLockoutConfig)
    max_body_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024,
                                description="largest request body accepted")
    ws_max_clients: int = Field(default=64, ge=1, le=10_000,
                                description="WebSocket connections at once")
    ws_tick_s: Seconds = Field(default=0.05, ge=0.001, le=5.0,
                               description="how often the journal is read for WebSocket "
                               "clients")
    alarm_wait_s: Seconds = Field(default=5.0, ge=0.05, le=60.0,
                                  description="how long an alarm action waits for the alarm "
                                  "manager's answer before 503 (the request stays queued)")

    @model_validator(mode="after")
    def _check(self) -> ApiConfig:
        host, _ = split_listen(self.listen)
        if self.tls is None and not is_loopback(host):
            raise ValueError(f"listen {self.listen!r} is not a loopback address: serving "
                             "the API off this machine needs tls (cert_file, key_file)")
        if self.token_secret_file and self.token_secret_env:
            raise ValueError("give token_secret_file or token_secret_env, not both")
        if self.refresh_ttl_s < self.token_ttl_s:
            raise ValueError("refresh_ttl_s must not be shorter than token_ttl_s")
        return self
