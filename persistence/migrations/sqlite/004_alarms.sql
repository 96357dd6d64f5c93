-- Alarms with a lifecycle (告警处置): at most one live alarm per (kind, subject), who acknowledged and who
-- closed it and when (closed_by NULL with closed_ms set: the system, when the condition cleared).
CREATE TABLE alarms (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT NOT NULL CHECK (kind IN ('sos', 'offline', 'low_battery', 'geofence', 'task_overdue')),
    subject          TEXT NOT NULL,
    court_id         TEXT NOT NULL REFERENCES courts (id),
    unit_id          TEXT REFERENCES units (id),
    details          TEXT NOT NULL,
    raised_ms        INTEGER NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved', 'false_alarm')),
    active           INTEGER NOT NULL,
    cleared_ms       INTEGER,
    repeats          INTEGER NOT NULL DEFAULT 0,
    acknowledged_by  INTEGER REFERENCES users (id),
    acknowledged_ms  INTEGER,
    closed_by        INTEGER REFERENCES users (id),
    closed_ms        INTEGER,
    note             TEXT
);
CREATE UNIQUE INDEX alarms_live_idx ON alarms (kind, subject) WHERE state IN ('open', 'acknowledged');
CREATE INDEX alarms_court_idx ON alarms (court_id, raised_ms);
