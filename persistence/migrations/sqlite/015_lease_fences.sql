-- Fencing (core/fencing.py): per lease name, the newest grant epoch that has written under it. A write made
-- under a lease raises the row to its epoch in its own transaction, and is refused when the row is higher.
CREATE TABLE lease_fences (
    name   TEXT PRIMARY KEY,
    epoch  BIGINT NOT NULL
);
