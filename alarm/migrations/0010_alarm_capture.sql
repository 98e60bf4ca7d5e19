-- (This migration used to define moa_write_alarm(), which migration 11 drops.)
--
-- One alarm per (user, item): setting an alarm twice leaves one row. Duplicates that an
-- operator may have inserted before this migration are folded into the oldest row first.
DELETE FROM public.alarm a
USING public.alarm b
WHERE a.user_id = b.user_id AND a.item_id = b.item_id AND a.id > b.id;

CREATE UNIQUE INDEX IF NOT EXISTS alarm_user_item_key ON public.alarm (user_id, item_id);

-- Capture every change of alarm rows, keyed by "user_id:item_id", on alarm.events.
INSERT INTO moa_entity_version (entity, key, version, deleted, data)
SELECT 'alarm', coalesce(a.user_id::text, 'null') || ':' || coalesce(a.item_id::text, 'null'),
       nextval('moa_version_seq'), false, to_jsonb(a)
FROM public.alarm a
ON CONFLICT (entity, key) DO NOTHING;

DROP TRIGGER IF EXISTS moa_capture_alarm ON public.alarm;
CREATE TRIGGER moa_capture_alarm
    AFTER INSERT OR UPDATE OR DELETE ON public.alarm
    FOR EACH ROW EXECUTE FUNCTION moa_capture('alarm', 'alarm.events', 'user_id', 'item_id');
