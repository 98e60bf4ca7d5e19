-- Sets or clears several alarms in one statement and one transaction (the service coalesces
-- concurrent requests, see common::batch), in the order given. Returns each pair's versioned
-- state after its change, tagged with the 1-based position of the request it answers.
-- moa.request_id is set per request, so every change event carries its own request's id
-- (and tells the capture trigger that the service wakes its relay itself).
CREATE OR REPLACE FUNCTION moa_write_alarms(p_user_ids integer[], p_item_ids integer[], p_sets boolean[],
                                            p_request_ids text[])
RETURNS TABLE (ord integer, key text, version bigint, deleted boolean, data jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    i integer;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_user_ids, 1), 0) LOOP
        PERFORM set_config('moa.request_id', coalesce(nullif(p_request_ids[i], ''), '-'), true);
        IF p_sets[i] THEN
            INSERT INTO public.alarm (item_id, user_id, created)
            VALUES (p_item_ids[i], p_user_ids[i], now()::timestamp)
            ON CONFLICT (user_id, item_id) DO NOTHING;
        ELSE
            DELETE FROM public.alarm a WHERE a.user_id = p_user_ids[i] AND a.item_id = p_item_ids[i];
        END IF;
        RETURN QUERY
            SELECT i, v.key, v.version, v.deleted, v.data FROM moa_entity_version v
            WHERE v.entity = 'alarm' AND v.key = p_user_ids[i]::text || ':' || p_item_ids[i]::text;
    END LOOP;
END;
$$;

-- The one-at-a-time function it replaces.
DROP FUNCTION IF EXISTS moa_write_alarm(integer, integer, boolean, text);
