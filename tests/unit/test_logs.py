from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from sidecar.logs import HumanFormatter, JsonFormatter, configure


def record(message: str, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("sidecar.test", logging.WARNING, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(entry, key, value)
    return entry


def test_each_line_is_json_with_extras_and_quotes_survive() -> None:
    line = JsonFormatter().format(record('lead "Acme"\nchanged', job="poll", lead="00Q1"))
    data = json.loads(line)
    assert data["message"] == 'lead "Acme"\nchanged' and data["job"] == "poll" and data["level"] == "WARNING"
    assert "\n" not in line


def test_tokens_are_masked_even_if_someone_logs_them() -> None:
    line = JsonFormatter().format(record("auth with xoxb-123-456-abc and Bearer pat-na1-11111111-2222",
                                         header="Bearer abc.def"))
    assert "xoxb-123" not in line and "pat-na1" not in line and "abc.def" not in line
    assert json.loads(line)["message"].count("***") == 2


def test_the_human_format_is_one_short_line_with_time_level_and_message_and_no_token() -> None:
    line = HumanFormatter().format(record("hubspot poll failed with pat-na1-1111-2222", job="poll"))
    assert line.endswith(" WARNING  hubspot poll failed with ***") and "\n" not in line
    assert line[:4].isdigit() and line[19] == "Z" and "job" not in line


@pytest.fixture
def root_logging() -> Iterator[None]:
    """`configure` replaces the root logger's handlers; give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    chatty = {name: logging.getLogger(name).level for name in ("apscheduler", "urllib3.connectionpool", "alembic")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, previous in chatty.items():
        logging.getLogger(name).setLevel(previous)


def test_scheduler_chatter_shows_only_at_debug_and_json_lines_parse(
        root_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO", "json")
    logging.getLogger("apscheduler.executors.default").info('Running job "poll" (scheduled at ...)')
    logging.getLogger("apscheduler.scheduler").warning("Execution of job skipped: maximum instances reached")
    logging.getLogger("sidecar.health").warning("hubspot poll failed", extra={"crm": "hubspot"})
    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["hubspot poll failed"]
    assert json.loads(lines[0])["crm"] == "hubspot"
    configure("DEBUG", "human")
    logging.getLogger("apscheduler.executors.default").info('Running job "poll" (scheduled at ...)')
    assert " DEBUG    Running job \"poll\"" in capsys.readouterr().err


def test_an_unknown_level_is_one_clear_error(root_logging: None) -> None:
    with pytest.raises(ValueError, match="SIDECAR_LOG_LEVEL"):
        configure("LOUD")


def test_message_bodies_of_the_slack_sdk_stay_out_even_at_debug(
        root_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    """PII in logs is limited to ids: the Slack SDK's DEBUG records hold message text and e-mails."""
    configure("DEBUG", "human")
    logging.getLogger("slack_sdk.web.base_client").debug(
        "Sending a request - json_body: {'text': 'SLA breach: Aisha Al-Mansoori (Emirates Group)'}")
    logging.getLogger("slack_sdk.web.base_client").warning("Received a rate limit response (retrying)")
    logging.getLogger("sidecar.jobs").debug("lead 00Q000000000001AAA: clock 7 fired")
    err = capsys.readouterr().err
    assert "Aisha" not in err and "rate limit response" in err and "clock 7 fired" in err
