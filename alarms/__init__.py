"""Alarms with a lifecycle (告警处置): raised by the system, acknowledged, resolved or marked false by a person."""
