-- Alarms with a lifecycle (告警处置): at most one live alarm per (kind, subject), who acknowledged and who
-- closed it and when (closed_by NULL with closed_ms set: the system, when the condition cleared).
CREATE TABLE alarms (
    id               BIGSERIAL PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind IN ('sos', 'offline', 'low_battery', 'geofence', 'task_overdue')),
    subject          TEXT NOT NULL,
    court_id         TEXT NOT NULL REFERENCES courts (id),
    unit_id          TEXT REFERENCES units (id),
    details          TEXT NOT NULL,
    raised_ms        BIGINT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved', 'false_alarm')),
    active           BOOLEAN NOT NULL,
    cleared_ms       BIGINT,
    repeats          INTEGER NOT NULL DEFAULT 0,
    acknowledged_by  BIGINT REFERENCES users (id),
    acknowledged_ms  BIGINT,
    closed_by        BIGINT REFERENCES users (id),
    closed_ms        BIGINT,
    note             TEXT
);
CREATE UNIQUE INDEX alarms_live_idx ON alarms (kind, subject) WHERE state IN ('open', 'acknowledged');
CREATE INDEX alarms_court_idx ON alarms (court_id, raised_ms);
