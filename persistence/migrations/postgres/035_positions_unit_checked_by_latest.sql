-- A position's unit is checked once per unit, not once per position: the foreign key from positions to units
-- goes; the one from unit_latest stays. The one statement that stores positions (PgDatabase.insert_positions)
-- upserts every unit of its batch into unit_latest, atomically with the positions: a unit that does not exist
-- fails the insert into unit_latest and with it the whole batch (NotFound, as before), and a unit with
-- positions has a unit_latest row, so it cannot be deleted either. What changes is the cost: the key on
-- positions took a row lock on the unit (FOR KEY SHARE) and wrote it to the WAL for every position, 30 % of
-- the database's CPU on 10,000 positions a second (bench.telemetry).
ALTER TABLE positions DROP CONSTRAINT IF EXISTS positions_unit_id_fkey;
