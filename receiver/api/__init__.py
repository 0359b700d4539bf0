"""The admin API under ``/api/v1``; every route is scoped to the API key's organisation."""

from fastapi import APIRouter

from receiver.api import (
    account_plans,
    accounts,
    bills,
    credentials,
    deadletters,
    events,
    integrations,
    mappings,
    runs,
    sources,
    users,
)

router = APIRouter(prefix="/api/v1")
for module in (
    events,
    deadletters,
    sources,
    users,
    accounts,
    account_plans,
    mappings,
    credentials,
    integrations,
    bills,
    runs,
):
    router.include_router(module.router)
