"""Celery tasks: thin. Each loads what it needs, calls ``domain``, and records the outcome."""
