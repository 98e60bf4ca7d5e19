-- (This migration used to define moa_write_alarm(), which migration 11 drops.)
--
-- This text was edited in place after databases had applied it (the runner records versions,
-- not texts: see common::db::migrate). Earlier texts also backfilled one moa_entity_version
-- row per existing alarm, which took over three minutes at 10M alarms (docs/performance.md,
-- "Huge seed"). This one does not: an alarm loaded before capture existed has no version row
-- and is read as version 0 until it first changes (alarm/sql/functions/moa_alarm_rows.sql and
-- moa_write_alarms.sql read it so, and say why that is exact; docs/decisions.md, "Alarms
-- loaded before capture"). A database that applied an earlier text has a version row for
-- every alarm instead: the readers find no unversioned row there, and answer the same.

-- One large transaction (the index build below sorts the whole table): do not wait for its
-- WAL flush per statement, and give the index build memory enough to sort in one pass.
SET LOCAL synchronous_commit = off;
SET LOCAL maintenance_work_mem = '256MB';

-- One alarm per (user, item): setting an alarm twice leaves one row. Duplicates that an
-- operator may have inserted before this migration are folded into the oldest row first.
-- Building the unique index is the check: when it succeeds there was nothing to fold, and the
-- self-join (a hash join of the table with itself, spilling gigabytes at 10M rows) is skipped.
-- The index is also how moa_alarm_rows() finds a user's unversioned alarms.
DO $$
BEGIN
    CREATE UNIQUE INDEX IF NOT EXISTS alarm_user_item_key ON public.alarm (user_id, item_id);
EXCEPTION WHEN unique_violation THEN
    DELETE FROM public.alarm a
    USING public.alarm b
    WHERE a.user_id = b.user_id AND a.item_id = b.item_id AND a.id > b.id;
    CREATE UNIQUE INDEX IF NOT EXISTS alarm_user_item_key ON public.alarm (user_id, item_id);
END $$;

-- Capture every change of alarm rows, keyed by "user_id:item_id", on alarm.events (from
-- migration 12 on, with a WHEN clause that lets moa_write_alarms record its own changes).
DROP TRIGGER IF EXISTS moa_capture_alarm ON public.alarm;
CREATE TRIGGER moa_capture_alarm
    AFTER INSERT OR UPDATE OR DELETE ON public.alarm
    FOR EACH ROW EXECUTE FUNCTION moa_capture('alarm', 'alarm.events', 'user_id', 'item_id');
