-- The alarm domain's answer to a prefix read (store::Query::Prefix for entity "alarm", which
-- the alarm service registers: see alarm/src/store.rs, PREFIX_READS): every versioned row whose
-- key starts with p_prefix, and, for a prefix "<user_id>:", that user's alarm rows that have no
-- version row yet, as version 0.
--
-- Alarms loaded before the capture trigger existed (a dump restored into alarm_db) are never
-- backfilled (a version row per alarm took minutes at 10M alarms, see docs/decisions.md,
-- "Alarms loaded before capture"): such an alarm has version 0 until it first changes. Why
-- that is exact:
-- - every change (the trigger, moa_write_alarms) writes a version row with a version > 0, so
--   an event beats a version-0 read in every cache (newest version wins), and the row it
--   writes hides the base row here (NOT EXISTS);
-- - a clear writes a tombstone, which hides the deleted row (there is none left anyway); the
--   tombstone collector deletes a tombstone only once the alarm row is gone, so nothing
--   unversioned reappears;
-- - the owner's newest version (moa_max_version) is unaffected: 0 is below every version.
-- A database whose capture migration backfilled every alarm (the earlier text of migration
-- 10) simply has no row in the second half.
--
-- A row with a NULL item_id names no item (every reader drops it) and has no unique key: it
-- is left out until it changes (then the trigger versions it as "<user_id>:null").
-- A prefix that is not exactly "<user_id>:" as user_id::text spells it (no sign, no leading
-- zero, within integer) gets the versioned rows only: no cast error, and no row whose key
-- would not start with the prefix.
CREATE OR REPLACE FUNCTION moa_alarm_rows(p_prefix text)
RETURNS TABLE (key text, version bigint, deleted boolean, data jsonb)
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_column
DECLARE
    v_id   bigint;
    v_user integer;
BEGIN
    -- Nested, not one AND: SQL does not promise to test the pattern before the cast.
    IF p_prefix ~ '^-?[0-9]{1,10}:$' THEN
        v_id := left(p_prefix, -1)::bigint;
        IF v_id BETWEEN -2147483648 AND 2147483647 AND v_id::text || ':' = p_prefix THEN
            v_user := v_id;
        END IF;
    END IF;
    -- The range on moa_entity_version's primary key, [prefix, prefix + U+FFFF), as every
    -- other entity's prefix read; the alarms through alarm_user_item_key (user_id, item_id),
    -- each checked against the primary key.
    RETURN QUERY
        SELECT v.key, v.version, v.deleted, v.data
        FROM moa_entity_version v
        WHERE v.entity = 'alarm' AND v.key >= p_prefix AND v.key < p_prefix || chr(65535)
        UNION ALL
        SELECT a.user_id::text || ':' || a.item_id::text, 0::bigint, false, to_jsonb(a)
        FROM public.alarm a
        WHERE v_user IS NOT NULL AND a.user_id = v_user AND a.item_id IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM moa_entity_version u
                          WHERE u.entity = 'alarm' AND u.key = a.user_id::text || ':' || a.item_id::text);
END;
$$;
