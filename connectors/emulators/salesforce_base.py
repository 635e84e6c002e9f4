"""What the pieces of the Salesforce emulator share: the API error, its JSON rendering, record
attributes, and `SalesforceBase`, the state the mixins (`salesforce_query`, `salesforce_records`,
`salesforce_helpers`) find on `SalesforceEmulator`, declared here for the type checker.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from connectors.emulators.http import FaultPlan, Request, Response
from connectors.emulators.salesforce_login import LoginDirectory
from connectors.emulators.salesforce_outbound import OutboundQueue
from connectors.emulators.salesforce_store import OrgStore


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def api_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, [{"message": message, "errorCode": code}], headers or {})


def attributed(sobject: str, version: str, record_id: str, row: dict[str, Any]) -> dict[str, Any]:
    url = f"/services/data/v{version}/sobjects/{sobject}/{record_id}"
    return {"attributes": {"type": sobject, "url": url}, **row}


class SalesforceBase:
    # Provided by SalesforceEmulator / the Emulator base.
    lock: threading.RLock
    store: OrgStore
    logins: LoginDirectory
    outbound: OutboundQueue
    faults: FaultPlan
    org_id: str
    integration_user_id: str
    api_calls_used: int
    daily_limit: int
    _actor: str

    if TYPE_CHECKING:  # defined by SalesforceEmulator; nothing here shadows them at run time
        def fault_response(self, kind: str, request: Request) -> Response:
            raise NotImplementedError

        def _dispatch(self, request: Request) -> Response:
            raise NotImplementedError

    def _sobject(self, name: str | None, status: int = 404) -> str:
        canonical = {n.lower(): n for n in self.store.schemas}.get((name or "").lower())
        if canonical is None:
            raise ApiError(status, "NOT_FOUND", "The requested resource does not exist")
        return canonical

    def _body(self, request: Request) -> Any:
        try:
            return request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {exc}") from exc
