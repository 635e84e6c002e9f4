"""HTTP side of the sidecar: health, webhook intake (routers come from the connectors)."""
