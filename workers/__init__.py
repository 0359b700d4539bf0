"""How it all runs: the Celery app, its signals and schedule, and the process entry points."""
