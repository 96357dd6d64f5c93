-- Tasks sent to field units (派警任务): queued until the unit's channel is open, delivered until acknowledged.
CREATE TABLE unit_tasks (
    id          TEXT PRIMARY KEY,
    unit_id     TEXT NOT NULL REFERENCES units (id),
    court_id    TEXT NOT NULL REFERENCES courts (id),
    kind        TEXT NOT NULL CHECK (kind IN ('go_to', 'search', 'seize', 'start_recording', 'stop_recording',
                                              'call_back')),
    title       TEXT NOT NULL,
    details     TEXT NOT NULL,
    created_by  INTEGER NOT NULL REFERENCES users (id),
    created_ms  INTEGER NOT NULL,
    due_ms      INTEGER,
    status      TEXT NOT NULL CHECK (status IN ('queued', 'delivered', 'acknowledged', 'in_progress', 'done',
                                                'failed', 'cancelled')),
    updated_ms  INTEGER NOT NULL,
    note        TEXT
);
CREATE INDEX unit_tasks_unit_idx ON unit_tasks (unit_id, created_ms);
CREATE INDEX unit_tasks_court_idx ON unit_tasks (court_id, created_ms);
