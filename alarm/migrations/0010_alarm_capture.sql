-- (This migration used to define moa_write_alarm(), which migration 11 drops.)
--
-- Its effect is unchanged since it was first applied; only how it gets there was made cheaper
-- for large tables (10M alarms: see docs/performance.md, "huge seed"), so databases that
-- applied the earlier text are in the same state as those applying this one.

-- The backfill below is one large transaction: do not wait for its WAL flush per statement,
-- and give the index builds memory enough to sort in one pass.
SET LOCAL synchronous_commit = off;
SET LOCAL maintenance_work_mem = '256MB';

-- One alarm per (user, item): setting an alarm twice leaves one row. Duplicates that an
-- operator may have inserted before this migration are folded into the oldest row first.
-- Building the unique index is the check: when it succeeds there was nothing to fold, and the
-- self-join (a hash join of the table with itself, spilling gigabytes at 10M rows) is skipped.
DO $$
BEGIN
    CREATE UNIQUE INDEX IF NOT EXISTS alarm_user_item_key ON public.alarm (user_id, item_id);
EXCEPTION WHEN unique_violation THEN
    DELETE FROM public.alarm a
    USING public.alarm b
    WHERE a.user_id = b.user_id AND a.item_id = b.item_id AND a.id > b.id;
    CREATE UNIQUE INDEX IF NOT EXISTS alarm_user_item_key ON public.alarm (user_id, item_id);
END $$;

-- Capture every change of alarm rows, keyed by "user_id:item_id", on alarm.events.
-- Rows loaded before the trigger existed (the seed) get their first version here: one
-- set-based INSERT, with the primary key of moa_entity_version built once after it (a sort)
-- rather than maintained row by row (random inserts into a 10M-entry btree). Rows with both
-- ids set are unique by the index above; an existing version row wins (ON CONFLICT DO NOTHING
-- before): NOT EXISTS keeps it. Rows with a NULL id may share a key: those few go through
-- ON CONFLICT DO NOTHING once the key is back, as before.
ALTER TABLE moa_entity_version DROP CONSTRAINT moa_entity_version_pkey;

INSERT INTO moa_entity_version (entity, key, version, deleted, data)
SELECT 'alarm', a.user_id::text || ':' || a.item_id::text, nextval('moa_version_seq'), false, to_jsonb(a)
FROM public.alarm a
WHERE a.user_id IS NOT NULL AND a.item_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM moa_entity_version v
                  WHERE v.entity = 'alarm' AND v.key = a.user_id::text || ':' || a.item_id::text);

ALTER TABLE moa_entity_version ADD CONSTRAINT moa_entity_version_pkey PRIMARY KEY (entity, key);

INSERT INTO moa_entity_version (entity, key, version, deleted, data)
SELECT 'alarm', coalesce(a.user_id::text, 'null') || ':' || coalesce(a.item_id::text, 'null'),
       nextval('moa_version_seq'), false, to_jsonb(a)
FROM public.alarm a
WHERE a.user_id IS NULL OR a.item_id IS NULL
ON CONFLICT (entity, key) DO NOTHING;

DROP TRIGGER IF EXISTS moa_capture_alarm ON public.alarm;
CREATE TRIGGER moa_capture_alarm
    AFTER INSERT OR UPDATE OR DELETE ON public.alarm
    FOR EACH ROW EXECUTE FUNCTION moa_capture('alarm', 'alarm.events', 'user_id', 'item_id');
