"""One JSON object per log line (for `sidecar run`), with no secrets in it.

Messages and extras are serialised with json.dumps, so quotes or newlines in a CRM value can never
break a line. Anything that looks like a token is masked before it is written, as a last line of
defence: the code never logs secrets on purpose.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# Slack tokens, HubSpot private-app tokens, Salesforce session ids, bearer headers.
_SECRET = re.compile(r"(xox[abprs]-[\w-]+|pat-[a-z0-9]+-[\w-]+|00D\w{12,15}![\w.]+|Bearer\s+[\w.~+/-]+=*)")


def mask(text: str) -> str:
    return _SECRET.sub("***", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname, "logger": record.name, "message": mask(record.getMessage()),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["error"] = mask(self.formatException(record.exc_info))
        return mask(json.dumps(entry, default=str))


def configure(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
