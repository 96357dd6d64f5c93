-- Courts (上下一体 hierarchy), people, their sessions, and field units with their device credentials.

CREATE TABLE courts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    level       TEXT NOT NULL CHECK (level IN ('high', 'intermediate', 'basic')),
    parent_id   TEXT REFERENCES courts (id),
    CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE INDEX courts_parent_idx ON courts (parent_id);

CREATE TABLE users (
    id             BIGSERIAL PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    display_name   TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('operator', 'judge', 'supervisor', 'admin')),
    court_id       TEXT NOT NULL REFERENCES courts (id),
    disabled       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX users_court_idx ON users (court_id);

CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,            -- SHA-256 of the bearer token, hex
    user_id      BIGINT NOT NULL REFERENCES users (id),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

CREATE TABLE units (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('body_camera', 'handheld', 'vehicle')),
    court_id     TEXT NOT NULL REFERENCES courts (id),
    secret_hash  TEXT NOT NULL UNIQUE,        -- SHA-256 of the device secret, hex
    revoked_at   TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX units_court_idx ON units (court_id);
