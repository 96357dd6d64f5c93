-- A duty-log note may be the system's (no user): a step no person took, such as an entrustment found past its
-- deadline by the overdue sweep, is still written in both courts' duty logs (shown as 系统). SQLite cannot drop
-- a NOT NULL: the table is rebuilt with every note and its id.
CREATE TABLE duty_notes_033 (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    court_id  TEXT NOT NULL REFERENCES courts (id),
    at_ms     INTEGER NOT NULL,
    user_id   INTEGER REFERENCES users (id),
    text      TEXT NOT NULL
);
INSERT INTO duty_notes_033 (id, court_id, at_ms, user_id, text) SELECT id, court_id, at_ms, user_id, text FROM duty_notes;
-- keep AUTOINCREMENT's promise: an id once used is not given again
DELETE FROM sqlite_sequence WHERE name = 'duty_notes_033';
INSERT INTO sqlite_sequence (name, seq) SELECT 'duty_notes_033', seq FROM sqlite_sequence WHERE name = 'duty_notes';
DROP TABLE duty_notes;
ALTER TABLE duty_notes_033 RENAME TO duty_notes;
CREATE INDEX duty_notes_court_idx ON duty_notes (court_id, at_ms);
