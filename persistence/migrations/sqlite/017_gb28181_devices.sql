-- GB/T 28181 devices (gb28181/): a unit's 20-digit device id and its Digest HA1 = MD5(id:realm:password)
-- (the password itself is never stored), and the channels (cameras) its Catalog response listed.
CREATE TABLE gb_devices (
    unit_id     TEXT PRIMARY KEY REFERENCES units (id),
    device_id   TEXT NOT NULL UNIQUE,
    ha1         TEXT NOT NULL
);

CREATE TABLE gb_channels (
    unit_id       TEXT NOT NULL REFERENCES units (id),
    channel_id    TEXT NOT NULL,
    name          TEXT NOT NULL,
    manufacturer  TEXT NOT NULL,
    model         TEXT NOT NULL,
    status        TEXT NOT NULL,
    parent_id     TEXT NOT NULL,
    updated_ms    BIGINT NOT NULL,
    PRIMARY KEY (unit_id, channel_id)
);
