-- Placeholder: migration 009 is reserved for another branch; the numbering must have no gaps. Drop this file
-- when that branch's 009 is merged.
SELECT 1;
