"""Sending SMS and voice calls through Twilio's REST API (the ``twilio`` package).

The client is Twilio's own (``twilio.rest.Client``): messages are
``POST /2010-04-01/Accounts/{sid}/Messages.json`` (To, From, Body) and calls
``.../Calls.json`` (To, From, Twiml), both with HTTP basic auth (account SID and auth
token). ``base_url`` replaces ``https://api.twilio.com``, which is how the tests point
it at a local stand-in. The client is synchronous (``requests``): the process calls
:meth:`TwilioSender.send` on worker threads, so a slow or dead Twilio never holds up
alarm evaluation.

A call speaks the text with TwiML ``<Say>``, built with the package's
``VoiceResponse``, which escapes it: a message holding ``<``, ``&`` or quotes cannot
change the document.

Secrets: the auth token comes from a file or an environment variable, is handed to the
client and nowhere else; ``repr`` and errors never show it. Twilio's own HTTP logger
writes every request at INFO (URL and headers): it is set to WARNING here, so our log
stays one line per event.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from petra.config._alarms import TwilioConfig
from petra.errors import ConfigError, PetraError

log = logging.getLogger("petra.alarms.twilio")
_quiet = logging.getLogger("petra.alarms.twilio.http")
_quiet.setLevel(logging.WARNING)


def read_token(cfg: TwilioConfig) -> str:
    """The auth token from ``auth_token_file`` or ``auth_token_env`` (never logged)."""
    if cfg.auth_token_file:
        try:
            token = Path(cfg.auth_token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read auth_token_file: {exc.strerror}",
                              key_path="alarms.notifications.twilio.auth_token_file"
                              ) from None
    else:
        assert cfg.auth_token_env is not None
        token = os.environ.get(cfg.auth_token_env, "").strip()
        if not token:
            raise ConfigError(f"environment variable {cfg.auth_token_env} is not set",
                              key_path="alarms.notifications.twilio.auth_token_env")
    if not token:
        raise ConfigError("the Twilio auth token is empty",
                          key_path="alarms.notifications.twilio")
    return token


class SendError(PetraError):
    """A send that failed: whether trying again can help, and what happened (without
    secrets)."""

    def __init__(self, retryable: bool, text: str, status: int | None = None,
                 code: int | None = None) -> None:
        super().__init__(text)
        self.retryable = retryable
        self.text = text
        self.status = status
        self.code = code


def twiml_say(text: str, *, voice: str | None, language: str, repeat: int) -> str:
    """The TwiML document of a call that says ``text`` ``repeat`` times (escaped)."""
    from twilio.twiml.voice_response import VoiceResponse

    resp = VoiceResponse()
    for k in range(repeat):
        if k:
            resp.pause(length=1)
        resp.say(text, voice=voice, language=language)
    return str(resp)


class TwilioSender:
    """One Twilio client; :meth:`send` is called on worker threads."""

    def __init__(self, cfg: TwilioConfig, token: str) -> None:
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        self.cfg = cfg
        http = TwilioHttpClient(timeout=cfg.timeout_s, logger=_quiet)
        # environment: not os.environ, so TWILIO_EDGE/TWILIO_REGION cannot reroute us
        self._client = Client(cfg.account_sid, token, http_client=http,
                              environment={"PETRA": "1"})
        self._client.api.base_url = cfg.base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"<TwilioSender account={self.cfg.account_sid} base_url={self.cfg.base_url}>"

    def send(self, channel: str, to: str, text: str) -> str:
        """Send one SMS or start one call; the Twilio SID. Raises :class:`SendError`."""
        try:
            if channel == "voice":
                twiml = twiml_say(text, voice=self.cfg.voice, language=self.cfg.language,
                                  repeat=self.cfg.repeat_say)
                res: Any = self._client.calls.create(to=to, from_=self.cfg.from_number,
                                                     twiml=twiml)
            else:
                res = self._client.messages.create(to=to, from_=self.cfg.from_number,
                                                   body=text)
        except Exception as exc:
            raise classify(exc) from None
        return str(getattr(res, "sid", "") or "")


def classify(exc: BaseException) -> SendError:
    """Map a client exception to a :class:`SendError`: HTTP 429 and 5xx, timeouts and
    connection errors are worth retrying; other 4xx answers are not."""
    from twilio.base.exceptions import TwilioRestException

    if isinstance(exc, TwilioRestException):
        status = int(exc.status)
        retryable = status == 429 or status >= 500
        msg = (exc.msg or "").splitlines()[0][:200] if exc.msg else ""
        return SendError(retryable, f"HTTP {status} code {exc.code}: {msg}".rstrip(": "),
                         status, exc.code)
    name = type(exc).__name__
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return SendError(True, f"{name}: {text}" if text else name)
