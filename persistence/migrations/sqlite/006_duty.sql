-- Duty in the command centre (执行值守): the roster of posts per court and day, sign-in, and the duty log's notes.
CREATE TABLE duty_roster (
    court_id      TEXT NOT NULL REFERENCES courts (id),
    day           TEXT NOT NULL,
    post          TEXT NOT NULL CHECK (post IN ('officer', 'technician')),
    user_id       INTEGER NOT NULL REFERENCES users (id),
    assigned_by   INTEGER NOT NULL REFERENCES users (id),
    signed_in_ms  INTEGER,
    PRIMARY KEY (court_id, day, post)
);

CREATE TABLE duty_notes (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    court_id  TEXT NOT NULL REFERENCES courts (id),
    at_ms     INTEGER NOT NULL,
    user_id   INTEGER NOT NULL REFERENCES users (id),
    text      TEXT NOT NULL
);
CREATE INDEX duty_notes_court_idx ON duty_notes (court_id, at_ms);
