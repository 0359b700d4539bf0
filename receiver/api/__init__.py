"""The admin API under ``/api/v1``; every route is scoped to the API key's organisation."""

from fastapi import APIRouter, Depends

from receiver.api import (
    account_plans,
    accounts,
    bills,
    credentials,
    deadletters,
    destinations,
    event_types,
    events,
    integrations,
    mappings,
    notification_rules,
    runs,
    sources,
    users,
    webhook_destinations,
)
from receiver.api.answers import EVERY_ROUTE, answers, document_body_errors
from receiver.api.deps import refuse_unstorable_text

router = APIRouter(
    prefix="/api/v1",
    dependencies=[Depends(refuse_unstorable_text)],
    responses=answers(*EVERY_ROUTE),
)
for module in (
    events,
    event_types,
    deadletters,
    sources,
    users,
    accounts,
    account_plans,
    mappings,
    credentials,
    destinations,
    integrations,
    bills,
    runs,
    notification_rules,
    webhook_destinations,
):
    document_body_errors(module.router)
    router.include_router(module.router)
