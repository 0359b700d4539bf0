"""A person's consent, from the link they open to the tokens meterbridge keeps.

``authorization_url`` makes the provider's consent link for a credential (with a new
single-use ``state``); the provider sends the person's browser back to
``/oauth/<destination>/callback`` (``Settings.oauth_redirect_uri``), where
``complete_authorization`` takes the state, exchanges the code for tokens, learns the
tenant, stores the tokens and marks the credential ``connected``. The API and the CLI
(``meterbridge credentials connect``) both use these two.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session

from domain.connections.states import begin_authorization, consent_url, take_state
from domain.connections.status import mark_connected
from domain.connections.tokens import save_tokens
from domain.db import transaction
from domain.destinations.spec import Grant
from domain.errors import Conflict, InvalidInput
from domain.integrations.credentials import Credential, get_credential, open_credential
from domain.secrets import SecretBox
from domain.settings import Settings
from workers.connections.connector import Consent
from workers.destinations.consents import CONSENTS


class ConsentDenied(InvalidInput):
    """The person (or the provider) declined: the callback carries ``error``."""


@dataclass(frozen=True)
class ConsentLink:
    #: The provider's consent page, with a new single-use ``state``.
    url: str
    #: Where the provider sends the browser back: to register with the app.
    redirect_uri: str


def authorization_url(
    session: Session, box: SecretBox, settings: Settings, org_id: str, credential_id: str
) -> ConsentLink:
    credential = get_credential(session, org_id, credential_id)
    consent = _consent(box, settings, credential)
    redirect_uri = settings.oauth_redirect_uri(credential.destination)
    state = begin_authorization(
        session,
        org_id=org_id,
        credential_id=credential.id,
        destination=credential.destination,
        redirect_uri=redirect_uri,
    )
    url = consent_url(
        consent.consent_page(),
        client_id=consent.client_id,
        redirect_uri=redirect_uri,
        scopes=consent.scopes,
        state=state,
    )
    return ConsentLink(url, redirect_uri)


def complete_authorization(
    engine: Engine, box: SecretBox, settings: Settings, destination: str, params: Mapping[str, str]
) -> Credential:
    """Raises ``StateRefused`` or ``ConsentDenied`` (the person's mistake or choice),
    ``TokenRefused`` (the provider refused the code) or ``TransientError``."""
    with transaction(engine) as session:
        record = take_state(session, destination, params.get("state", ""))
        credential = get_credential(session, record.org_id, record.credential_id)
        consent = _consent(box, settings, credential)
    if "error" in params:
        reason = params.get("error_description") or params["error"]
        raise ConsentDenied(f"the authorization was not given: {reason}"[:500], field="query.error")
    code = params.get("code", "")
    if not code:
        raise InvalidInput("the callback has no code", field="query.code")
    connected = consent.exchange(code, record.redirect_uri, params)
    with transaction(engine) as session:
        credential = get_credential(session, record.org_id, record.credential_id)
        save_tokens(session, box, credential.org_id, credential.id, connected.tokens)
        mark_connected(session, credential, connected.tenant_id)
    return credential


def _consent(box: SecretBox, settings: Settings, credential: Credential) -> Consent:
    fields = open_credential(box, credential)
    factory = CONSENTS.get(credential.destination)
    if factory is None or fields.grant != Grant.AUTHORIZATION_CODE:
        raise Conflict(
            f"credential {credential.id} connects with {fields.grant.value.replace('_', ' ')}: "
            "there is nothing to authorize in a browser"
        )
    return factory(settings, fields)
