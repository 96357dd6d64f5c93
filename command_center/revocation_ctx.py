"""The cleanup context of credentials on live connections: WebSocket tickets and revocation.

Kept apart from ``app.py`` so the app factory gains one line. It runs after the media context, so a
revocation also ends WHEP views, talkback and a unit's media session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from command_center.keys import BUS, CLUSTER, MEDIA, REVOCATIONS, STORE, TICKETS
from command_center.revocation import Revocations
from command_center.tickets import LocalTickets, RedisTickets, TicketBook
from config.settings import Settings


def revocation_ctx(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        auth = settings.auth
        tickets: TicketBook
        if app[CLUSTER].shared:  # a ticket issued by one process is redeemed by the one the socket reaches
            tickets = RedisTickets(
                settings.bus.url, namespace=settings.bus.namespace, ttl_seconds=auth.ticket_ttl_seconds
            )
        else:
            tickets = LocalTickets(auth.ticket_ttl_seconds)
        revocations = Revocations(app[STORE], app[BUS], recheck_seconds=auth.recheck_seconds)
        revocations.media = app[MEDIA]
        await revocations.start()
        app[TICKETS], app[REVOCATIONS] = tickets, revocations
        try:
            yield
        finally:
            await revocations.close()
            await tickets.close()

    return ctx
