"""The one-time nonces of forwarded requests (``command_center.forwarding.HopNonces``); the hops themselves,
forged, replayed and honoured, are tried against two real processes in test_scale_out."""

from __future__ import annotations

import time

from command_center.forwarding import HopNonces, hop_headers, hop_mac


def test_a_nonce_is_taken_once_and_forgotten_only_after_the_window() -> None:
    nonces = HopNonces(window_seconds=0.2)
    assert nonces.take("a" * 32)
    assert not nonces.take("a" * 32), "a replay inside the window"
    time.sleep(0.25)
    assert nonces.take("b" * 32)  # taking one forgets those past the window
    assert nonces.take("a" * 32), "past the window the hop is stale anyway (its time is checked first)"


def test_a_full_book_refuses_rather_than_grows() -> None:
    nonces = HopNonces(limit=2)
    assert nonces.take("1") and nonces.take("2")
    assert not nonces.take("3")


def test_each_hop_has_its_own_nonce_and_the_mac_covers_the_credential() -> None:
    one = hop_headers("secret", "DELETE", "/api/whep/U1/v1", "node-a", "Bearer t1", now=1_000)
    two = hop_headers("secret", "DELETE", "/api/whep/U1/v1", "node-a", "Bearer t1", now=1_000)
    assert one["X-CC-Forwarded-Nonce"] != two["X-CC-Forwarded-Nonce"]
    nonce = one["X-CC-Forwarded-Nonce"]
    assert one["X-CC-Forwarded-MAC"] == hop_mac("secret", "DELETE", "/api/whep/U1/v1", "node-a", "1000", nonce,
                                                "Bearer t1")  # fmt: skip
    assert one["X-CC-Forwarded-MAC"] != hop_mac("secret", "DELETE", "/api/whep/U1/v1", "node-a", "1000", nonce,
                                                "Bearer t2")  # fmt: skip
