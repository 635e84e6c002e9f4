"""Lead-SLA sidecar: makes a CRM's lead response-time promise real."""

__version__ = "0.1.0"
