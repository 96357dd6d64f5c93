-- Point-to-point asset queries (点对点查控): cases with parties and assigned judges, queries fanned out as
-- one durable job per (party, agency) — the job id is the agency's Idempotency-Key —, the assets found,
-- follow-ups (freeze, renew, unfreeze, deduct) with their second approval, and the hash-chained audit log.
-- Times are milliseconds since the Unix epoch; JSON is stored as canonical text.

CREATE TABLE cases (
    id           BIGSERIAL PRIMARY KEY,
    case_number  TEXT NOT NULL UNIQUE,
    court_id     TEXT NOT NULL REFERENCES courts (id),
    title        TEXT NOT NULL,
    created_by   BIGINT NOT NULL REFERENCES users (id),
    created_ms   BIGINT NOT NULL
);
CREATE INDEX cases_court_idx ON cases (court_id);

CREATE TABLE case_parties (
    id          BIGSERIAL PRIMARY KEY,
    case_id     BIGINT NOT NULL REFERENCES cases (id),
    kind        TEXT NOT NULL CHECK (kind IN ('person', 'organisation')),
    name        TEXT NOT NULL,
    identifier  TEXT NOT NULL,
    UNIQUE (case_id, identifier)
);

CREATE TABLE case_judges (
    case_id  BIGINT NOT NULL REFERENCES cases (id),
    user_id  BIGINT NOT NULL REFERENCES users (id),
    PRIMARY KEY (case_id, user_id)
);
CREATE INDEX case_judges_user_idx ON case_judges (user_id);

CREATE TABLE queries (
    id            TEXT PRIMARY KEY,
    case_id       BIGINT NOT NULL REFERENCES cases (id),
    judge_id      BIGINT NOT NULL REFERENCES users (id),
    reason        TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    deadline_ms   BIGINT NOT NULL,
    completed_ms  BIGINT
);
CREATE INDEX queries_case_idx ON queries (case_id);
CREATE INDEX queries_running_idx ON queries (completed_ms);

CREATE TABLE query_jobs (
    id           TEXT PRIMARY KEY,
    query_id     TEXT NOT NULL REFERENCES queries (id),
    party_id     BIGINT NOT NULL REFERENCES case_parties (id),
    agency_id    TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'answered', 'no_assets', 'failed', 'timed_out')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    created_ms   BIGINT NOT NULL,
    updated_ms   BIGINT NOT NULL,
    answered_ms  BIGINT,
    UNIQUE (query_id, party_id, agency_id)
);
CREATE INDEX query_jobs_status_idx ON query_jobs (status);

CREATE TABLE assets (
    id           BIGSERIAL PRIMARY KEY,
    query_id     TEXT NOT NULL REFERENCES queries (id),
    job_id       TEXT NOT NULL REFERENCES query_jobs (id),
    agency_id    TEXT NOT NULL,
    party_id     BIGINT NOT NULL REFERENCES case_parties (id),
    kind         TEXT NOT NULL,
    ref          TEXT NOT NULL,
    description  TEXT NOT NULL,
    value_cents  BIGINT,
    details      TEXT NOT NULL,
    UNIQUE (job_id, ref)
);
CREATE INDEX assets_query_idx ON assets (query_id);

CREATE TABLE followups (
    id            TEXT PRIMARY KEY,
    asset_id      BIGINT NOT NULL REFERENCES assets (id),
    query_id      TEXT NOT NULL REFERENCES queries (id),
    case_id       BIGINT NOT NULL REFERENCES cases (id),
    agency_id     TEXT NOT NULL,
    action        TEXT NOT NULL CHECK (action IN ('freeze', 'renew', 'unfreeze', 'deduct')),
    amount_cents  BIGINT CHECK (amount_cents > 0),
    reason        TEXT NOT NULL,
    requested_by  BIGINT NOT NULL REFERENCES users (id),
    requested_ms  BIGINT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('awaiting_approval', 'rejected', 'approved', 'sending',
                                                  'confirmed', 'refused', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    approved_by   BIGINT REFERENCES users (id),
    decided_ms    BIGINT,
    agency_ref    TEXT,
    error         TEXT,
    updated_ms    BIGINT NOT NULL
);
CREATE INDEX followups_query_idx ON followups (query_id);
CREATE INDEX followups_status_idx ON followups (status);

CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    action     TEXT NOT NULL,
    actor_id   BIGINT,
    at_ms      BIGINT NOT NULL,
    reason     TEXT NOT NULL,
    case_id    BIGINT,
    query_id   TEXT,
    details    TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL UNIQUE
);
