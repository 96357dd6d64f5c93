-- Enforcement operations (执行行动) and their timelines.
CREATE TABLE operations (
    id                TEXT PRIMARY KEY,
    court_id          TEXT NOT NULL REFERENCES courts (id),
    kind              TEXT NOT NULL CHECK (kind IN ('search', 'seizure', 'eviction', 'detention')),
    title             TEXT NOT NULL,
    case_id           INTEGER REFERENCES cases (id),
    commander_id      INTEGER NOT NULL REFERENCES users (id),
    onsite_commander  TEXT NOT NULL,
    target            TEXT NOT NULL,
    unit_ids          TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('planned', 'under_way', 'concluded', 'cancelled')),
    created_by        INTEGER NOT NULL REFERENCES users (id),
    created_ms        INTEGER NOT NULL,
    started_ms        INTEGER,
    ended_ms          INTEGER
);
CREATE INDEX operations_court_idx ON operations (court_id, created_ms);

CREATE TABLE operation_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    operation_id  TEXT NOT NULL REFERENCES operations (id),
    at_ms         INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    user_id       INTEGER REFERENCES users (id),
    text          TEXT NOT NULL,
    ref           TEXT NOT NULL
);
CREATE INDEX operation_events_operation_idx ON operation_events (operation_id, at_ms);
