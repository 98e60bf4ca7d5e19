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

-- Sets or clears one alarm and returns the pair's versioned state, in one round trip and one
-- transaction. moa.request_id ties the change event to the HTTP request (and tells the
-- capture trigger that the service wakes its relay itself).
CREATE OR REPLACE FUNCTION moa_write_alarm(p_user_id integer, p_item_id integer, p_set boolean, p_request_id text)
RETURNS TABLE (key text, version bigint, deleted boolean, data jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('moa.request_id', coalesce(nullif(p_request_id, ''), '-'), true);
    IF p_set THEN
        INSERT INTO public.alarm (item_id, user_id, created)
        VALUES (p_item_id, p_user_id, now()::timestamp)
        ON CONFLICT (user_id, item_id) DO NOTHING;
    ELSE
        DELETE FROM public.alarm a WHERE a.user_id = p_user_id AND a.item_id = p_item_id;
    END IF;
    RETURN QUERY
        SELECT v.key, v.version, v.deleted, v.data FROM moa_entity_version v
        WHERE v.entity = 'alarm' AND v.key = p_user_id::text || ':' || p_item_id::text;
END;
$$;
