"""The destinations whose credentials a person connects in the browser (OAuth's
authorization code), found by name: each one's app, which makes the consent link and
turns the callback's code into tokens (``workers.connections.consent``).

Apart from ``registry`` (the performers) because the receiver serves the callback: it
needs the apps, never the performers and the worker runtime they load."""

from __future__ import annotations

from workers.connections.connector import ConsentFactory
from workers.destinations.quickbooks.connect import quickbooks_app
from workers.destinations.xero.connect import xero_consent

CONSENTS: dict[str, ConsentFactory] = {"quickbooks": quickbooks_app, "xero": xero_consent}
