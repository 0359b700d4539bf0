"""Chargebee: the HTTP client and the run that keeps an invoice in step with a bill."""
