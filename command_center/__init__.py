"""The composition root and the edge: app factory, HTTP API, authentication and roles, pages, CLI."""
