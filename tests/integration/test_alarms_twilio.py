"""The real twilio client against a local stand-in of Twilio's REST API: SMS and call
requests with the right form fields and basic auth, TwiML escaped, errors classified,
and the token in no log line."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from twilio_standin import TwilioStandIn

from petra.alarms._twilio import SendError, TwilioSender, read_token
from petra.config._alarms import TwilioConfig
from petra.errors import ConfigError

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "s3cr3t-token-value"


@pytest.fixture
def standin() -> Iterator[TwilioStandIn]:
    s = TwilioStandIn()
    s.start()
    try:
        yield s
    finally:
        s.stop()


def sender(base: str, tmp: Path, **over: object) -> TwilioSender:
    tok = tmp / "token"
    tok.write_text(TOKEN + "\n")
    cfg = TwilioConfig.model_validate({"account_sid": SID, "auth_token_file": str(tok),
                                       "from": "+15005550006", "base_url": base,
                                       "timeout_s": 5, **over})
    return TwilioSender(cfg, read_token(cfg))


def test_sms_request(standin: TwilioStandIn, tmp_path: Path,
                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    s = sender(standin.base_url, tmp_path)
    sid = s.send("sms", "+491701234567", "[CRITICAL] Tank 1 level 93 % & rising")
    (req,) = standin.wait_for(1)
    assert req.method == "POST"
    assert req.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert (req.user, req.password) == (SID, TOKEN)
    assert req.form == {"To": "+491701234567", "From": "+15005550006",
                        "Body": "[CRITICAL] Tank 1 level 93 % & rising"}
    assert sid.startswith("SM")
    assert TOKEN not in caplog.text and TOKEN not in repr(s)


def test_voice_call_says_the_text_escaped(standin: TwilioStandIn, tmp_path: Path) -> None:
    s = sender(standin.base_url, tmp_path, voice="alice", language="de-DE", repeat_say=2)
    text = 'Tank <1> & "pump" </Say><Hangup/>'
    sid = s.send("voice", "+491701234567", text)
    (req,) = standin.wait_for(1)
    assert req.path.endswith("/Calls.json") and sid.startswith("CA")
    assert req.form["To"] == "+491701234567" and req.form["From"] == "+15005550006"
    root = ET.fromstring(req.form["Twiml"])
    says = root.findall("Say")
    assert [x.text for x in says] == [text, text]  # the text, not markup
    assert says[0].attrib == {"voice": "alice", "language": "de-DE"}
    assert root.find("Hangup") is None


@pytest.mark.parametrize(("status", "body", "retryable"), [
    (400, {"code": 21211, "message": "The 'To' number is not a valid phone number.",
           "status": 400}, False),
    (401, {"code": 20003, "message": "Authenticate", "status": 401}, False),
    (429, {"code": 20429, "message": "Too Many Requests", "status": 429}, True),
    (500, {"code": 20500, "message": "Internal Server Error", "status": 500}, True),
    (503, {"message": "Service Unavailable"}, True),
])
def test_errors_are_classified(standin: TwilioStandIn, tmp_path: Path, status: int,
                               body: dict[str, object], retryable: bool) -> None:
    standin.script((status, body))
    with pytest.raises(SendError) as info:
        sender(standin.base_url, tmp_path).send("sms", "+491701234567", "x")
    assert info.value.retryable is retryable and info.value.status == status
    assert f"HTTP {status}" in str(info.value) and TOKEN not in str(info.value)


def test_unreachable_twilio_is_retryable(tmp_path: Path) -> None:
    s = sender("http://127.0.0.1:9", tmp_path)  # discard port: connection refused
    with pytest.raises(SendError) as info:
        s.send("sms", "+491701234567", "x")
    assert info.value.retryable and TOKEN not in str(info.value)


def test_token_from_env_and_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = TwilioConfig.model_validate({"account_sid": SID, "auth_token_env": "PETRA_TW_T",
                                       "from": "+15005550006"})
    monkeypatch.delenv("PETRA_TW_T", raising=False)
    with pytest.raises(ConfigError, match="PETRA_TW_T is not set"):
        read_token(cfg)
    monkeypatch.setenv("PETRA_TW_T", " abc ")
    assert read_token(cfg) == "abc"
