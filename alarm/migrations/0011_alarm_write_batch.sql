-- Alarm writes in batches. The batch function, moa_write_alarms(), is defined in
-- alarm/sql/functions/moa_write_alarms.sql (applied on every start): that file is its live definition.

-- The one-at-a-time function it replaced (migration 10 used to create it).
DROP FUNCTION IF EXISTS moa_write_alarm(integer, integer, boolean, text);
