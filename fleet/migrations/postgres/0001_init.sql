-- agecam-fleet schema, version 1 (PostgreSQL). Applied once at start, recorded in
-- schema_migrations. Only what units publish: k-anonymous cells per interval; nothing per person.
-- Times are Unix seconds (UTC).

-- A unit registers itself with its first stored interval.
CREATE TABLE units (
    unit_id           TEXT PRIMARY KEY,
    first_seen        BIGINT NOT NULL,  -- collector clock, first interval stored
    last_seen         BIGINT NOT NULL,  -- collector clock, latest new interval stored
    last_interval_end BIGINT NOT NULL   -- unit clock, latest interval end reported
);

-- One row per interval id (unit@start): the first version received.
CREATE TABLE intervals (
    id               TEXT PRIMARY KEY,
    unit_id          TEXT NOT NULL,
    start_s          BIGINT NOT NULL,
    end_s            BIGINT NOT NULL,
    uptime_s         DOUBLE PRECISION NOT NULL,
    frames           BIGINT NOT NULL,
    camera_faults    BIGINT NOT NULL,
    suppressed_cells BIGINT NOT NULL,
    dwell_mean_s     DOUBLE PRECISION,
    visits           BIGINT NOT NULL,   -- sum of its published cells
    received_at      BIGINT NOT NULL,
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
    start_s     BIGINT NOT NULL,
    age_bucket  TEXT NOT NULL,
    gender      TEXT NOT NULL,
    visits      BIGINT NOT NULL CHECK (visits >= 0),
    PRIMARY KEY (interval_id, age_bucket, gender)
);
CREATE INDEX cells_start ON cells (start_s);
CREATE INDEX cells_unit_start ON cells (unit_id, start_s);

-- Re-sends whose content differs from the stored interval: kept aside, never merged.
CREATE TABLE conflicts (
    interval_id    TEXT NOT NULL,
    unit_id        TEXT NOT NULL,
    digest         TEXT NOT NULL,       -- of the parked canonical JSON
    visits         BIGINT NOT NULL,
    canonical      TEXT NOT NULL,
    first_received BIGINT NOT NULL,
    last_received  BIGINT NOT NULL,
    times          BIGINT NOT NULL,     -- how often this content came
    PRIMARY KEY (interval_id, digest)
);
