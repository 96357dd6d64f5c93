-- The case source (立案): cases come from the court's case-management system (a system client), a file
-- import, or a supervisor by hand, never from the judge who queries. A case has a status (only one under
-- way, 执行中, may be queried) and may have no creating user (the system or an import made it). A party
-- added to an existing case by hand waits for a supervisor's approval as a proposal.
ALTER TABLE cases ALTER COLUMN created_by DROP NOT NULL;
ALTER TABLE cases ADD COLUMN status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'terminated', 'closed'));
ALTER TABLE cases ADD COLUMN source TEXT NOT NULL DEFAULT 'manual' CHECK (source IN ('manual', 'system', 'import'));

CREATE TABLE system_clients (
    id           BIGSERIAL PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    court_id     TEXT NOT NULL REFERENCES courts (id),
    secret_hash  TEXT NOT NULL UNIQUE,
    created_ms   BIGINT NOT NULL,
    revoked_ms   BIGINT
);

CREATE TABLE party_proposals (
    id           BIGSERIAL PRIMARY KEY,
    case_id      BIGINT NOT NULL REFERENCES cases (id),
    kind         TEXT NOT NULL CHECK (kind IN ('person', 'organisation')),
    name         TEXT NOT NULL,
    identifier   TEXT NOT NULL,
    reason       TEXT NOT NULL,
    proposed_by  BIGINT NOT NULL REFERENCES users (id),
    proposed_ms  BIGINT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('awaiting_approval', 'approved', 'rejected')),
    decided_by   BIGINT REFERENCES users (id),
    decided_ms   BIGINT,
    note         TEXT NOT NULL DEFAULT '',
    party_id     BIGINT REFERENCES case_parties (id)
);
CREATE INDEX party_proposals_case_idx ON party_proposals (case_id);
