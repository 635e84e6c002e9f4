"""Log lines an operator can read: a short human line by default, one JSON object per line with
`SIDECAR_LOG_FORMAT=json`; never a secret in either.

Messages and extras are serialised with json.dumps in the JSON format, so quotes or newlines in a CRM
value can never break a line. Anything that looks like a token is masked before it is written, as a
last line of defence: the code never logs secrets on purpose.

Libraries' routine chatter is demoted to DEBUG: APScheduler announces every job run at INFO and
warns when a run is skipped or late (our jobs report their own problems, once, with a cause), and
urllib3 warns on each connection retry (the failure that matters is reported by the job), and
Alembic describes its migration context each time the store is opened.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Slack tokens, HubSpot private-app tokens, Salesforce session ids, bearer headers, and the signature
# of a signed URL such as a Teams Workflows webhook's (urllib3 logs request URLs at DEBUG).
_SECRET = re.compile(r"(xox[abprs]-[\w-]+|pat-[a-z0-9]+-[\w-]+|00D\w{12,15}![\w.]+|Bearer\s+[\w.~+/-]+=*"
                     r"|(?<=[?&]sig=)[\w%.~+/=-]+)")
# Loggers whose INFO and WARNING records are routine for us (see the module docstring).
_CHATTY = ("apscheduler", "urllib3.connectionpool", "alembic")
# Loggers whose DEBUG records carry request and response bodies (the Slack SDK logs every message's
# text, lead names and e-mail lookups included): held at INFO even at DEBUG, so that personal data
# in the log stays limited to record ids.
_BODIES = ("slack_sdk",)


def mask(text: str) -> str:
    return _SECRET.sub("***", text)


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname, "logger": record.name, "message": mask(record.getMessage()),
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["error"] = mask(self.formatException(record.exc_info))
        return mask(json.dumps(entry, default=str))


class HumanFormatter(logging.Formatter):
    """`2026-12-02 14:03:07Z WARNING  hubspot poll failed: ...`: time (UTC), level, message. Extras
    are for machines and stay in the JSON format; a traceback, when attached, follows the line."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        line = f"{at} {record.levelname:<8} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return mask(line)


class DemoteChatter(logging.Filter):
    """Label the routine records of chatty libraries as DEBUG (they reach the handler only when the
    configured level is DEBUG: `configure` raises those loggers' level otherwise)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR and record.name.startswith(_CHATTY):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def configure(level: str, fmt: str = "human") -> None:
    """Send every log record to stderr in `fmt` ("human" or "json") from `level` up."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"SIDECAR_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {level!r}")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else HumanFormatter())
    handler.addFilter(DemoteChatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in _CHATTY:  # their INFO and WARNING records count as DEBUG
        logging.getLogger(name).setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.ERROR)
    for name in _BODIES:
        logging.getLogger(name).setLevel(max(numeric, logging.INFO))
