-- Cross-court command: the courts whose units take part in another court's operation (异地调度), and
-- entrustments between courts (执行委托) with their timelines.
CREATE TABLE operation_courts (
    operation_id  TEXT NOT NULL REFERENCES operations (id),
    court_id      TEXT NOT NULL REFERENCES courts (id),
    PRIMARY KEY (operation_id, court_id)
);
CREATE INDEX operation_courts_court_idx ON operation_courts (court_id);

CREATE TABLE entrustments (
    id             TEXT PRIMARY KEY,
    from_court_id  TEXT NOT NULL REFERENCES courts (id),
    to_court_id    TEXT NOT NULL REFERENCES courts (id),
    task           TEXT NOT NULL,
    address        TEXT NOT NULL,
    lat            REAL,
    lon            REAL,
    deadline_ms    INTEGER NOT NULL,
    reason         TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('requested', 'accepted', 'refused', 'completed', 'withdrawn')),
    unit_ids       TEXT NOT NULL,
    created_by     INTEGER NOT NULL REFERENCES users (id),
    created_ms     INTEGER NOT NULL,
    decided_ms     INTEGER,
    ended_ms       INTEGER,
    CHECK (from_court_id <> to_court_id)
);
CREATE INDEX entrustments_from_idx ON entrustments (from_court_id, created_ms);
CREATE INDEX entrustments_to_idx ON entrustments (to_court_id, created_ms);

CREATE TABLE entrustment_events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    entrustment_id  TEXT NOT NULL REFERENCES entrustments (id),
    at_ms           INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    court_id        TEXT NOT NULL REFERENCES courts (id),
    user_id         INTEGER REFERENCES users (id),
    text            TEXT NOT NULL,
    ref             TEXT NOT NULL
);
CREATE INDEX entrustment_events_entrustment_idx ON entrustment_events (entrustment_id, at_ms);
