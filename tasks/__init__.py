"""Tasks sent to field units (派警任务): what a task is, how it may move, how it is shown, and the storage it
needs. Pure; delivering tasks over a unit's live channel is ``field_units.tasks``."""
