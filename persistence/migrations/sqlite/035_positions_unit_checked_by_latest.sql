-- Nothing to change here: PostgreSQL's migration 035 drops the foreign key from positions to units, whose check
-- locked the unit's row for every position. SQLite's check is a lookup with no lock and stays.
SELECT 1;
