"""Field units (执行单兵): telemetry validation, the status state machine, the batched position writer and
the live tracker (server side); the outbox, telemetry client, routes and simulator (device side)."""
