"""Loopback emulators of the Salesforce, HubSpot and Slack APIs, for the demo and for tests."""
