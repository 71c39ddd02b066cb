import json
import logging

import pytest

from engine.logs import JsonFormatter, RedactEmails, configure_logging


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("resistry.test", logging.INFO, __file__, 1, message, args, None)


def test_emails_are_redacted_from_message_and_arguments() -> None:
    entry = record("suppressed %s for %s", "Ada.Lovelace+x@Example.org", "bounce")
    RedactEmails().filter(entry)
    assert entry.getMessage() == "suppressed <email> for bounce"


def test_json_lines_carry_fields() -> None:
    entry = record("mailing sent")
    entry.fields = {"mailing_id": 3, "sends": 1000}
    line = json.loads(JsonFormatter().format(entry))
    assert line["message"] == "mailing sent"
    assert line["level"] == "info"
    assert line["mailing_id"] == 3 and line["sends"] == 1000


def test_configure_logging_json(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("json")
        logging.getLogger("resistry.x").info("hello %s", "bob@example.com")
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert line["message"] == "hello <email>"
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
