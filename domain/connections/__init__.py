"""Connections that stay connected: OAuth tokens for credentials, and the consent that
starts them.

- ``states``: a person's consent in the browser, bound by a single-use, expiring ``state``
  to the credential and organisation that asked for it.
- ``tokens``: a credential's current access and refresh tokens, encrypted at rest, and the
  rule for when an access token is still good to use.
- ``status``: a credential is ``connected``, ``awaiting_authorization`` or
  ``needs_reconnect``.

The calls to the destinations' token endpoints, and refreshing under a lock so that two
workers never use one refresh token, are the workers' (``workers.connections``).
"""
