-- The case source (立案): cases come from the court's case-management system (a system client), a file
-- import, or a supervisor by hand, never from the judge who queries. A case has a status (only one under
-- way, 执行中, may be queried) and may have no creating user (the system or an import made it). A party
-- added to an existing case by hand waits for a supervisor's approval as a proposal.
--
-- SQLite cannot drop NOT NULL from a column, so cases is rebuilt: its rows are copied aside, the table is
-- dropped and recreated, and the rows put back with the same ids. Foreign keys of the other tables name
-- the table, so they point at the new one; deferring the checks to COMMIT lets the drop pass, and putting
-- the rows back satisfies them again.
PRAGMA defer_foreign_keys = ON;
CREATE TEMP TABLE cases_before_009 AS SELECT * FROM cases;
DROP TABLE cases;
CREATE TABLE cases (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    case_number  TEXT NOT NULL UNIQUE,
    court_id     TEXT NOT NULL REFERENCES courts (id),
    title        TEXT NOT NULL,
    created_by   INTEGER REFERENCES users (id),
    created_ms   INTEGER NOT NULL,
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'terminated', 'closed')),
    source       TEXT NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'system', 'import'))
);
INSERT INTO cases (id, case_number, court_id, title, created_by, created_ms)
    SELECT id, case_number, court_id, title, created_by, created_ms FROM cases_before_009;
DROP TABLE cases_before_009;
CREATE INDEX cases_court_idx ON cases (court_id);

CREATE TABLE system_clients (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL UNIQUE,
    court_id     TEXT NOT NULL REFERENCES courts (id),
    secret_hash  TEXT NOT NULL UNIQUE,
    created_ms   INTEGER NOT NULL,
    revoked_ms   INTEGER
);

CREATE TABLE party_proposals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id      INTEGER NOT NULL REFERENCES cases (id),
    kind         TEXT NOT NULL CHECK (kind IN ('person', 'organisation')),
    name         TEXT NOT NULL,
    identifier   TEXT NOT NULL,
    reason       TEXT NOT NULL,
    proposed_by  INTEGER NOT NULL REFERENCES users (id),
    proposed_ms  INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('awaiting_approval', 'approved', 'rejected')),
    decided_by   INTEGER REFERENCES users (id),
    decided_ms   INTEGER,
    note         TEXT NOT NULL DEFAULT '',
    party_id     INTEGER REFERENCES case_parties (id)
);
CREATE INDEX party_proposals_case_idx ON party_proposals (case_id);
