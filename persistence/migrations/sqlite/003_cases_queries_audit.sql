-- Point-to-point asset queries (点对点查控): cases with parties and assigned judges, queries fanned out as
-- one durable job per (party, agency) — the job id is the agency's Idempotency-Key —, the assets found,
-- follow-ups (freeze, renew, unfreeze, deduct) with their second approval, and the hash-chained audit log.
-- Times are milliseconds since the Unix epoch; JSON is stored as canonical text.

CREATE TABLE cases (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    case_number  TEXT NOT NULL UNIQUE,
    court_id     TEXT NOT NULL REFERENCES courts (id),
    title        TEXT NOT NULL,
    created_by   INTEGER NOT NULL REFERENCES users (id),
    created_ms   INTEGER NOT NULL
);
CREATE INDEX cases_court_idx ON cases (court_id);

CREATE TABLE case_parties (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id     INTEGER NOT NULL REFERENCES cases (id),
    kind        TEXT NOT NULL CHECK (kind IN ('person', 'organisation')),
    name        TEXT NOT NULL,
    identifier  TEXT NOT NULL,
    UNIQUE (case_id, identifier)
);

CREATE TABLE case_judges (
    case_id  INTEGER NOT NULL REFERENCES cases (id),
    user_id  INTEGER NOT NULL REFERENCES users (id),
    PRIMARY KEY (case_id, user_id)
);
CREATE INDEX case_judges_user_idx ON case_judges (user_id);

CREATE TABLE queries (
    id            TEXT PRIMARY KEY,
    case_id       INTEGER NOT NULL REFERENCES cases (id),
    judge_id      INTEGER NOT NULL REFERENCES users (id),
    reason        TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    deadline_ms   INTEGER NOT NULL,
    completed_ms  INTEGER
);
CREATE INDEX queries_case_idx ON queries (case_id);
CREATE INDEX queries_running_idx ON queries (completed_ms);

CREATE TABLE query_jobs (
    id           TEXT PRIMARY KEY,
    query_id     TEXT NOT NULL REFERENCES queries (id),
    party_id     INTEGER NOT NULL REFERENCES case_parties (id),
    agency_id    TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'answered', 'no_assets', 'failed', 'timed_out')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    created_ms   INTEGER NOT NULL,
    updated_ms   INTEGER NOT NULL,
    answered_ms  INTEGER,
    UNIQUE (query_id, party_id, agency_id)
);
CREATE INDEX query_jobs_status_idx ON query_jobs (status);

CREATE TABLE assets (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    query_id     TEXT NOT NULL REFERENCES queries (id),
    job_id       TEXT NOT NULL REFERENCES query_jobs (id),
    agency_id    TEXT NOT NULL,
    party_id     INTEGER NOT NULL REFERENCES case_parties (id),
    kind         TEXT NOT NULL,
    ref          TEXT NOT NULL,
    description  TEXT NOT NULL,
    value_cents  INTEGER,
    details      TEXT NOT NULL,
    UNIQUE (job_id, ref)
);
CREATE INDEX assets_query_idx ON assets (query_id);

CREATE TABLE followups (
    id            TEXT PRIMARY KEY,
    asset_id      INTEGER NOT NULL REFERENCES assets (id),
    query_id      TEXT NOT NULL REFERENCES queries (id),
    case_id       INTEGER NOT NULL REFERENCES cases (id),
    agency_id     TEXT NOT NULL,
    action        TEXT NOT NULL CHECK (action IN ('freeze', 'renew', 'unfreeze', 'deduct')),
    amount_cents  INTEGER CHECK (amount_cents > 0),
    reason        TEXT NOT NULL,
    requested_by  INTEGER NOT NULL REFERENCES users (id),
    requested_ms  INTEGER NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('awaiting_approval', 'rejected', 'approved', 'sending',
                                                  'confirmed', 'refused', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    approved_by   INTEGER REFERENCES users (id),
    decided_ms    INTEGER,
    agency_ref    TEXT,
    error         TEXT,
    updated_ms    INTEGER NOT NULL
);
CREATE INDEX followups_query_idx ON followups (query_id);
CREATE INDEX followups_status_idx ON followups (status);

CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    action     TEXT NOT NULL,
    actor_id   INTEGER,
    at_ms      INTEGER NOT NULL,
    reason     TEXT NOT NULL,
    case_id    INTEGER,
    query_id   TEXT,
    details    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE
);
