from __future__ import annotations

import json
import logging

from sidecar.logs import JsonFormatter


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
