"""WebSocket tickets: the real token is exchanged, in a header, for a short single-use ticket that may go in
the socket's URL (``command_center.tickets``; docs/protocols.md)."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, Field

from command_center.api.registry import Registry, json_response
from command_center.auth import PEOPLE, Access, current_caller, ticket_credential
from command_center.keys import SETTINGS, TICKETS
from core.errors import ServiceUnavailable

api = Registry()


class TicketOut(BaseModel):
    ticket: str = Field(description="pass as ?ticket= when opening a WebSocket; works once")
    expires_in_seconds: float


@api.route(
    "POST",
    "/api/auth/ticket",
    summary="A single-use ticket to open a WebSocket (browsers cannot send headers on one); expires in 30 s "
    "(auth.ticket_ttl_seconds)",
    tag="auth",
    access=PEOPLE | {Access.DEVICE},
    response=TicketOut,
    errors=(ServiceUnavailable,),
)
async def ticket(request: web.Request) -> web.StreamResponse:
    credential = ticket_credential(request, current_caller(request))
    issued = await request.app[TICKETS].issue(credential)
    return json_response(TicketOut(ticket=issued, expires_in_seconds=request.app[SETTINGS].auth.ticket_ttl_seconds))
