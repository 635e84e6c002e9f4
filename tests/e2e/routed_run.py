"""`python -m tests.e2e.routed_run PORT CA_BUNDLE`: the real `sidecar run`, with Salesforce's login
host (https://login.salesforce.com) reaching 127.0.0.1:PORT and the emulator's CA trusted, as a
hosts-file entry and a company CA would. simple-salesforce hard-codes the login host, so this is the
only way a test can point a password login at a loopback port (see connectors.emulators.tls)."""

from __future__ import annotations

import sys
from typing import Any

import requests

from connectors.emulators.tls import route_login_domain
from connectors.salesforce import auth


def main() -> None:
    port, ca_bundle = sys.argv[1], sys.argv[2]
    real_connect = auth.connect

    def connect(credentials: auth.SalesforceCredentials, http: requests.Session | None = None,
                **options: Any) -> Any:
        session = requests.Session()
        session.verify, session.trust_env = ca_bundle, False
        route_login_domain(session, f"https://127.0.0.1:{port}")
        return real_connect(credentials, session, **options)

    auth.connect = connect  # wiring imports it at call time
    from sidecar.cli import app

    sys.argv = ["sidecar", "run"]
    app()


if __name__ == "__main__":
    main()
