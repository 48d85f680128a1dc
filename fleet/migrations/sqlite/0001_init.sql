-- agecam-fleet schema, version 1 (SQLite). Applied once at start, recorded in
-- schema_migrations. Only what units publish: k-anonymous cells per interval; nothing per person.
-- Times are Unix seconds (UTC).

-- A unit registers itself with its first stored interval.
CREATE TABLE units (
    unit_id           TEXT PRIMARY KEY,
    first_seen        INTEGER NOT NULL,  -- collector clock, first interval stored
    last_seen         INTEGER NOT NULL,  -- collector clock, latest new interval stored
    last_interval_end INTEGER NOT NULL   -- unit clock, latest interval end reported
);

-- One row per interval id (unit@start): the first version received.
CREATE TABLE intervals (
    id               TEXT PRIMARY KEY,
    unit_id          TEXT NOT NULL,
    start_s          INTEGER NOT NULL,
    end_s            INTEGER NOT NULL,
    uptime_s         REAL NOT NULL,
    frames           INTEGER NOT NULL,
    camera_faults    INTEGER NOT NULL,
    suppressed_cells INTEGER NOT NULL,
    dwell_mean_s     REAL,
    visits           INTEGER NOT NULL,   -- sum of its published cells
    received_at      INTEGER NOT NULL,
    digest           TEXT NOT NULL,     -- of its canonical JSON (compares re-sends)
    CHECK (end_s > start_s AND start_s >= 0),
    CHECK (frames >= 0 AND camera_faults >= 0 AND suppressed_cells >= 0 AND visits >= 0)
);
CREATE INDEX intervals_start ON intervals (start_s);
CREATE INDEX intervals_unit_start ON intervals (unit_id, start_s);

-- Published cells; unit_id and start_s repeated from the interval for aggregation.
CREATE TABLE cells (
    interval_id TEXT NOT NULL REFERENCES intervals (id),
    unit_id     TEXT NOT NULL,
    start_s     INTEGER NOT NULL,
    age_bucket  TEXT NOT NULL,
    gender      TEXT NOT NULL,
    visits      INTEGER NOT NULL CHECK (visits >= 0),
    PRIMARY KEY (interval_id, age_bucket, gender)
);
CREATE INDEX cells_start ON cells (start_s);
CREATE INDEX cells_unit_start ON cells (unit_id, start_s);

-- Re-sends whose content differs from the stored interval: kept aside, never merged.
CREATE TABLE conflicts (
    interval_id    TEXT NOT NULL,
    unit_id        TEXT NOT NULL,
    digest         TEXT NOT NULL,       -- of the parked canonical JSON
    visits         INTEGER NOT NULL,
    canonical      TEXT NOT NULL,
    first_received INTEGER NOT NULL,
    last_received  INTEGER NOT NULL,
    times          INTEGER NOT NULL,     -- how often this content came
    PRIMARY KEY (interval_id, digest)
);
