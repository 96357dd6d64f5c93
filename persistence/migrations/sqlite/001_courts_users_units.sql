-- Courts (上下一体 hierarchy), people, their sessions, and field units with their device credentials.
-- Times are REAL seconds since the Unix epoch (UTC); the adapter converts them to datetimes.

CREATE TABLE courts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    level       TEXT NOT NULL CHECK (level IN ('high', 'intermediate', 'basic')),
    parent_id   TEXT REFERENCES courts (id),
    CHECK (parent_id IS NULL OR parent_id <> id)
);
CREATE INDEX courts_parent_idx ON courts (parent_id);

CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    username       TEXT NOT NULL UNIQUE,
    display_name   TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('operator', 'judge', 'supervisor', 'admin')),
    court_id       TEXT NOT NULL REFERENCES courts (id),
    disabled       INTEGER NOT NULL DEFAULT 0,
    created_at     REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);
CREATE INDEX users_court_idx ON users (court_id);

CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    expires_at   REAL NOT NULL,
    revoked_at   REAL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

CREATE TABLE units (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('body_camera', 'handheld', 'vehicle')),
    court_id     TEXT NOT NULL REFERENCES courts (id),
    secret_hash  TEXT NOT NULL UNIQUE,
    revoked_at   REAL,
    created_at   REAL NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);
CREATE INDEX units_court_idx ON units (court_id);
