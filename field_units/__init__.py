"""Field units (执行单兵), server side: telemetry validation, the status state machine, the batched position
writer and the live tracker. The unit's own code is in ``field_device``; simulated units in ``simulators.units``."""
