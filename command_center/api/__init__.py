"""The HTTP API: one registry of endpoints (path, roles, body, response) that drives routing, role checks
and the OpenAPI document alike, so the three cannot drift apart."""
