-- Signed checkpoints of this centre's audit chain (core/checkpoint.py), one per signing.
CREATE TABLE audit_checkpoints (
    seq    INTEGER PRIMARY KEY,
    court  TEXT NOT NULL,
    head   TEXT NOT NULL,
    at_ms  INTEGER NOT NULL,
    key    TEXT NOT NULL,
    sig    TEXT NOT NULL
);

-- Checkpoints received from lower courts' centres (上下一体): append-only, never backwards, never forked.
CREATE TABLE audit_witness (
    court        TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    head         TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    key          TEXT NOT NULL,
    sig          TEXT NOT NULL,
    received_ms  INTEGER NOT NULL,
    PRIMARY KEY (court, seq)
);
