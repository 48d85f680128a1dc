-- agecam-fleet schema, version 2 (SQLite): attention per published cell (push schema 2).
-- watchers: visitors of the cell who looked at the screen for at least a second; attention_s:
-- the seconds they looked, in total. NULL (both) = unknown: a cell of a schema 1 unit (so every
-- cell stored before this migration) or one whose split the unit withheld (k-anonymity). Never 0
-- for unknown: the page counts unknown visits apart.
-- (SQLite adds no table constraint to an existing table: the checks sit on the columns.)
ALTER TABLE cells ADD COLUMN watchers INTEGER
    CHECK (watchers >= 0 AND watchers <= visits);
ALTER TABLE cells ADD COLUMN attention_s REAL
    CHECK (attention_s >= 0 AND (watchers IS NULL) = (attention_s IS NULL));
