-- A duty-log note may be the system's (no user): a step no person took, such as an entrustment found past its
-- deadline by the overdue sweep, is still written in both courts' duty logs (shown as 系统).
ALTER TABLE duty_notes ALTER COLUMN user_id DROP NOT NULL;
