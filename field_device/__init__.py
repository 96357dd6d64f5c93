"""The field unit's own code (执行单兵, device side): the durable telemetry outbox, the reference telemetry
client and the WebRTC media unit. It runs on the device, not in the server, so it lives apart from the
server's packages: it imports none of them, and they never import it (tests/test_layout.py)."""
