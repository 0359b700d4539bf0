"""Outbound integrations: configs, credentials, runs, and the Chargebee mapping."""
