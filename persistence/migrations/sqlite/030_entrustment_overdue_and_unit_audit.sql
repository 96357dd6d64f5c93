-- An entrustment past its deadline is marked once, by the sweep that raises its alarm (执行委托超期); and a
-- unit's audit entries (its recording segments) are found through an index instead of a read of the chain.
ALTER TABLE entrustments ADD COLUMN overdue_ms INTEGER;

ALTER TABLE audit_log ADD COLUMN unit_id TEXT;
UPDATE audit_log SET unit_id = json_extract(details, '$.unit_id')
 WHERE details LIKE '%"unit_id"%' AND json_type(details, '$.unit_id') = 'text';
CREATE INDEX audit_log_unit_idx ON audit_log (unit_id, action, seq) WHERE unit_id IS NOT NULL;
