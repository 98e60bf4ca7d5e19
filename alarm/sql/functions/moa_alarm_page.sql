-- The alarm domain's answer to a snapshot page (store::Query::Snapshot for entity "alarm",
-- which the alarm service registers: alarm/src/store.rs, PREFIX_READS): up to p_limit alarms
-- after the alarm keyed p_after ("<user_id>:<item_id>", NULL for the first page), in
-- (user_id, item_id) order, keyset-paginated on alarm_user_item_key. Read models backfill from
-- it (common/src/replica/read_model.rs), so it must include the alarms loaded before capture
-- existed, which have no version row (version 0, as moa_alarm_rows reads them); a versioned
-- alarm carries its version. No data: an alarm's key says everything a reader uses.
-- Tombstones are not paged: a read model learns of deletions from events and the digest.
CREATE OR REPLACE FUNCTION moa_alarm_page(p_after text, p_limit integer)
RETURNS TABLE (key text, version bigint, deleted boolean, data jsonb)
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_column
DECLARE
    v_user bigint := -2147483649;
    v_item bigint := -2147483649;
BEGIN
    IF p_after IS NOT NULL THEN
        IF p_after !~ '^-?[0-9]{1,10}:-?[0-9]{1,10}$' THEN
            RAISE EXCEPTION 'moa_alarm_page: % is not an alarm key', p_after USING ERRCODE = '22023';
        END IF;
        v_user := split_part(p_after, ':', 1)::bigint;
        v_item := split_part(p_after, ':', 2)::bigint;
    END IF;
    RETURN QUERY
        SELECT a.k, coalesce(v.version, 0::bigint), false, NULL::jsonb
        FROM (
            SELECT a.user_id::text || ':' || a.item_id::text AS k, a.user_id, a.item_id
            FROM public.alarm a
            WHERE (a.user_id, a.item_id) > (v_user, v_item) AND a.item_id IS NOT NULL
            ORDER BY a.user_id, a.item_id
            LIMIT greatest(p_limit, 1)
        ) a
        LEFT JOIN moa_entity_version v ON v.entity = 'alarm' AND v.key = a.k AND NOT v.deleted
        ORDER BY a.user_id, a.item_id;
END;
$$;
