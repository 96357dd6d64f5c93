"""Stand-ins for the world outside the server, for demos, tests and benchmarks: simulated field units
(``python -m simulators.units``) and partner agencies (``python -m simulators.agencies``). They talk to the
server only over its real interfaces; the server never imports them (tests/test_layout.py)."""
