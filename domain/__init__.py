"""The model and its rules: tables, the event log, the idempotency ledger, retries,
dead letters. Nothing here imports Celery or a web framework or talks to the network."""
