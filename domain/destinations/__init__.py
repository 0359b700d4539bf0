"""Bills-out destinations as plug-ins.

A destination is a package here (``domain/destinations/<name>/``: its options, its
credential fields and the pure mapping of a bill to the items it needs) plus a package in
``workers/destinations/<name>/`` (its HTTP client and the performer that makes the remote
side match). ``registry`` finds both halves by name. Everything else about a run (records,
which configs apply, the per-bill lock, the ledger of remote lines, error events, the
failure counter, external mappings) is shared and lives in ``domain.integrations``.
"""
