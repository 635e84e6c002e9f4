"""The escalation engine: SLA clocks, the ladder, routing. Decides; never calls a network API."""
