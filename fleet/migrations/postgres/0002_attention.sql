-- agecam-fleet schema, version 2 (PostgreSQL): attention per published cell (push schema 2).
-- watchers: visitors of the cell who looked at the screen for at least a second; attention_s:
-- the seconds they looked, in total. NULL (both) = unknown: a cell of a schema 1 unit (so every
-- cell stored before this migration) or one whose split the unit withheld (k-anonymity). Never 0
-- for unknown: the page counts unknown visits apart.
ALTER TABLE cells ADD COLUMN watchers BIGINT;
ALTER TABLE cells ADD COLUMN attention_s DOUBLE PRECISION;
ALTER TABLE cells ADD CONSTRAINT cells_attention_known_together
    CHECK ((watchers IS NULL) = (attention_s IS NULL));
ALTER TABLE cells ADD CONSTRAINT cells_attention_in_range
    CHECK (watchers >= 0 AND watchers <= visits AND attention_s >= 0);
