-- Consultation rooms (执行会商): a room for an operation or a case, the courts involved, and its invited
-- members with whether each is present and whether the host has muted them.
CREATE TABLE rooms (
    id            TEXT PRIMARY KEY,
    title         TEXT NOT NULL,
    court_id      TEXT NOT NULL REFERENCES courts (id),
    court_ids     TEXT NOT NULL,
    operation_id  TEXT REFERENCES operations (id),
    case_id       BIGINT REFERENCES cases (id),
    unit_id       TEXT REFERENCES units (id),
    host_id       BIGINT NOT NULL REFERENCES users (id),
    status        TEXT NOT NULL CHECK (status IN ('open', 'closed')),
    created_ms    BIGINT NOT NULL,
    closed_ms     BIGINT
);
CREATE INDEX rooms_host_idx ON rooms (host_id, created_ms);

CREATE TABLE room_members (
    room_id     TEXT NOT NULL REFERENCES rooms (id),
    user_id     BIGINT NOT NULL REFERENCES users (id),
    invited_by  BIGINT NOT NULL REFERENCES users (id),
    invited_ms  BIGINT NOT NULL,
    present     BOOLEAN NOT NULL DEFAULT FALSE,
    muted       BOOLEAN NOT NULL DEFAULT FALSE,
    joined_ms   BIGINT,
    left_ms     BIGINT,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_members_user_idx ON room_members (user_id);
