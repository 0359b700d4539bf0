"""How a run can fail, each kind logged as the error event the product names.

All of them are permanent: the run ends and the error event counts against the config.
Transient trouble (timeouts, 429, 5xx) is ``domain.errors.TransientError`` and retries.
"""

from __future__ import annotations

from domain.errors import PermanentError


class IntegrationError(PermanentError):
    event_type = "integration.perform.error"


class ConfigInvalid(IntegrationError):
    """The bill cannot be mapped with this config (e.g. no item price for a line)."""

    event_type = "integration.validation.error"


class MissingAccountMapping(IntegrationError):
    event_type = "integration.missingaccountmapping.error"


class AuthenticationFailed(IntegrationError):
    """No credential is attached, or the destination refused it (401/403)."""

    event_type = "integration.authentication.error"


class PerformFailed(IntegrationError):
    """The destination refused a request (another 4xx), or the invoice cannot be kept
    exact (it is no longer pending)."""

    event_type = "integration.perform.error"
