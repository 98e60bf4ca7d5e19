-- The state of one (user, item) alarm pair as readers see it: its version row, or, for an alarm
-- loaded before capture existed that has not changed since, the alarm row itself at version 0
-- (moa_alarm_rows.sql says why that is exact); no row when the pair has neither. What
-- moa_write_alarms answers for each request of a batch.
--
-- The version-0 row's data is its key's columns, {"item_id", "user_id"}: an index-only probe,
-- and no reader uses the other columns. moa_alarm_rows, the read of many users at once, answers
-- the same row with no data at all (that file says why: a jsonb per alarm was a third of a
-- cold read); here it is one row per write request, and the answer is kept as it was.
--
-- One SQL statement, STABLE, no SET clause: the planner inlines it where it is called (a
-- LATERAL join per request), so each half stays one unique-index probe.
CREATE OR REPLACE FUNCTION moa_alarm_state(p_user_id integer, p_item_id integer)
RETURNS TABLE (key text, version bigint, deleted boolean, data jsonb)
LANGUAGE sql STABLE
AS $$
    SELECT v.key, v.version, v.deleted, v.data FROM moa_entity_version v
    WHERE v.entity = 'alarm' AND v.key = p_user_id::text || ':' || p_item_id::text
    UNION ALL
    SELECT a.user_id::text || ':' || a.item_id::text, 0::bigint, false,
           jsonb_build_object('user_id', a.user_id, 'item_id', a.item_id)
    FROM public.alarm a
    WHERE a.user_id = p_user_id AND a.item_id = p_item_id
      AND NOT EXISTS (SELECT 1 FROM moa_entity_version u
                      WHERE u.entity = 'alarm' AND u.key = p_user_id::text || ':' || p_item_id::text)
$$;
