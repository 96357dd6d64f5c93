"""Field units (执行单兵): telemetry validation, status state machine, offline detection, simulator.

The directory of units and their device credentials lives in ``persistence`` and ``command_center``
today; the telemetry pipeline arrives with the live-tracking issue.
"""
