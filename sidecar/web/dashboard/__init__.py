"""The dashboard managers open: server-rendered pages over the store (see routes.py)."""
