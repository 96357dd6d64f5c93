-- Geofences (电子围栏): polygons or circles (a Point with radius_m), per court, with the crossing that alarms.
CREATE TABLE geofences (
    id          TEXT PRIMARY KEY,
    court_id    TEXT NOT NULL REFERENCES courts (id),
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('jurisdiction', 'target', 'no_go')),
    alarm_on    TEXT NOT NULL CHECK (alarm_on IN ('enter', 'exit', 'both', 'none')),
    geometry    TEXT NOT NULL,
    radius_m    REAL,
    created_by  INTEGER NOT NULL REFERENCES users (id),
    created_ms  INTEGER NOT NULL
);
CREATE INDEX geofences_court_idx ON geofences (court_id);
