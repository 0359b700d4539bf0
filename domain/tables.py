"""Every table, imported in one place so that metadata and migrations see them all."""

from sqlmodel import SQLModel

from domain.accounts import Account
from domain.bills import Bill
from domain.connections.states import OAuthState
from domain.connections.tokens import CredentialToken
from domain.events import Attempt, Event, LedgerEntry
from domain.integrations.configs import IntegrationConfig
from domain.integrations.credentials import Credential
from domain.integrations.runs import IntegrationRun
from domain.integrations.sync import BillSync, RemoteLine
from domain.mappings import ExternalMapping
from domain.notifications.emails import Email
from domain.notifications.rules import NotificationFiring, NotificationRule
from domain.organisations import ApiKey, Organisation
from domain.sources import Source
from domain.subscriptions.projection import AccountPlan
from domain.users import User
from domain.webhooks.destinations import WebhookDestination
from domain.webhooks.messages import WebhookAttempt, WebhookMessage

metadata = SQLModel.metadata

__all__ = [
    "Account",
    "AccountPlan",
    "ApiKey",
    "Attempt",
    "Bill",
    "BillSync",
    "Credential",
    "CredentialToken",
    "Email",
    "Event",
    "ExternalMapping",
    "IntegrationConfig",
    "IntegrationRun",
    "LedgerEntry",
    "NotificationFiring",
    "NotificationRule",
    "OAuthState",
    "Organisation",
    "RemoteLine",
    "Source",
    "User",
    "WebhookAttempt",
    "WebhookDestination",
    "WebhookMessage",
    "metadata",
]
