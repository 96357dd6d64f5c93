-- Telemetry: every position a unit reported (deduplicated by unit and sequence), each unit's latest
-- position (kept up to date by the writer so screens never scan the positions table), and unit status.
-- Times are milliseconds since the Unix epoch, as the devices send them.

ALTER TABLE units ADD COLUMN offline_after_seconds REAL CHECK (offline_after_seconds > 0);

CREATE TABLE positions (
    unit_id      TEXT NOT NULL REFERENCES units (id),
    seq          INTEGER NOT NULL,
    fix_time_ms  INTEGER NOT NULL,
    lat          REAL NOT NULL,
    lon          REAL NOT NULL,
    accuracy_m   REAL,
    speed_mps    REAL,
    heading_deg  REAL,
    altitude_m   REAL,
    battery_pct  REAL,
    sos          INTEGER NOT NULL,
    received_ms  INTEGER NOT NULL,
    PRIMARY KEY (unit_id, seq)
);
CREATE INDEX positions_unit_time_idx ON positions (unit_id, fix_time_ms);

CREATE TABLE unit_latest (
    unit_id      TEXT PRIMARY KEY REFERENCES units (id),
    seq          INTEGER NOT NULL,
    fix_time_ms  INTEGER NOT NULL,
    lat          REAL NOT NULL,
    lon          REAL NOT NULL,
    accuracy_m   REAL,
    speed_mps    REAL,
    heading_deg  REAL,
    altitude_m   REAL,
    battery_pct  REAL,
    sos          INTEGER NOT NULL,
    received_ms  INTEGER NOT NULL
);

CREATE TABLE unit_state (
    unit_id       TEXT PRIMARY KEY REFERENCES units (id),
    duty          TEXT NOT NULL CHECK (duty IN ('available', 'en_route', 'on_site')),
    sos           INTEGER NOT NULL,
    online        INTEGER NOT NULL,
    last_seen_ms  INTEGER
);
