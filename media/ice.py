"""Which addresses the server offers as ICE host candidates. A server with several networks (a court's
private network, a management network, loopback for a local benchmark) should offer only the one its units
and screens reach; aioice offers every interface but loopback and has no setting for it, so this replaces
the function it looks up when gathering (``aioice.ice.get_host_addresses``), process-wide."""

from __future__ import annotations

from collections.abc import Sequence

import aioice.ice


def restrict_host_addresses(addresses: Sequence[str]) -> None:
    """Offer exactly these addresses (empty: leave aioice's own choice)."""
    if not addresses:
        return
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses
