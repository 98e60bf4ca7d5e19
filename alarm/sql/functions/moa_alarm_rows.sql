-- The alarm domain's answer to a prefix read (store::Query::Prefix for entity "alarm", which
-- the alarm service registers: see alarm/src/store.rs, PREFIX_READS): every versioned row whose
-- key starts with one of p_prefixes, and, for each prefix "<user_id>:", that user's alarm rows
-- that have no version row yet, as version 0. Several prefixes are the cache misses of many
-- requests asked together (common/src/replica/misses.rs): one set-based statement for all.
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
-- An unversioned alarm has no data (SQL NULL, JSON null): its key says everything a reader
-- uses. The caches keep only an alarm's key, version and tombstone flag
-- (alarm/kind/src/lib.rs), and the contract shows no other column of an alarm. Until
-- 2026-12-01 the data was the whole row (`to_jsonb(a)`: a heap fetch per alarm on pages spread
-- over the table, 10 per user at 10M alarms), then its key's columns, read index-only from
-- alarm_user_item_key (`jsonb_build_object('user_id', .., 'item_id', ..)`). Measured at 1M
-- users / 10M alarms with pgbench: 32 random users per call, 555-632 calls/s with the whole
-- row, 755-847 with the key's columns; 12 users per call (a cold pass's merged question),
-- 2,575-3,293 calls/s with the key's columns and 3,912-5,071 with none: building each
-- jsonb and printing it as text was a third of the read. A version row (the trigger's event)
-- still carries the row.
-- A row with a NULL item_id names no item (every reader drops it) and has no unique key: it
-- is left out until it changes (then the trigger versions it as "<user_id>:null").
-- A prefix that is not exactly "<user_id>:" as user_id::text spells it (no sign, no leading
-- zero, within integer) gets the versioned rows only: no cast error, and no row whose key
-- would not start with the prefix. A prefix given twice is read once.
-- Until 2026-11-30 the function took one prefix; that definition is dropped, not left beside
-- (checked first: DROP ... IF EXISTS would log a NOTICE at every start).
-- Its own dollar quote: the function's body below stays the file's only dollar-dollar quote.
DO $drop$
BEGIN
    IF to_regprocedure('moa_alarm_rows(text)') IS NOT NULL THEN
        DROP FUNCTION moa_alarm_rows(text);
    END IF;
END;
$drop$;

CREATE OR REPLACE FUNCTION moa_alarm_rows(p_prefixes text[])
RETURNS TABLE (key text, version bigint, deleted boolean, data jsonb)
LANGUAGE plpgsql STABLE
AS $$
#variable_conflict use_column
DECLARE
    v_prefixes text[];
    v_users    integer[];
    v_id       bigint;
BEGIN
    SELECT coalesce(array_agg(DISTINCT p), '{}') INTO v_prefixes FROM unnest(p_prefixes) p WHERE p IS NOT NULL;
    -- The user each prefix names, or NULL.
    v_users := array_fill(NULL::integer, ARRAY[cardinality(v_prefixes)]);
    FOR i IN 1 .. cardinality(v_prefixes) LOOP
        -- Nested, not one AND: SQL does not promise to test the pattern before the cast.
        IF v_prefixes[i] ~ '^-?[0-9]{1,10}:$' THEN
            v_id := left(v_prefixes[i], -1)::bigint;
            IF v_id BETWEEN -2147483648 AND 2147483647 AND v_id::text || ':' = v_prefixes[i] THEN
                v_users[i] := v_id;
            END IF;
        END IF;
    END LOOP;
    -- Per prefix, the read one prefix gets: the range on moa_entity_version's primary key,
    -- [prefix, prefix + U+FFFF), as every other entity's prefix read, and the user's alarms
    -- through alarm_user_item_key (user_id, item_id), each checked against the versioned rows
    -- that range read. For a prefix "<user_id>:" that range holds every version row of the
    -- user's alarms, so it answers "is this alarm versioned?" as a probe of the primary key
    -- per alarm did, at about a third less time per user (measured: 30 users with ~10 alarms
    -- each, 2.8 -> 1.8 ms; docs/performance.md).
    -- OFFSET 0 keeps it a loop of index probes, each the plan of a one-prefix read (see
    -- PROBE_EACH in common/src/store.rs): flattened into one join, the plan depends on the
    -- estimates, and a wrong one hashes a whole table for a few hundred users.
    RETURN QUERY
        SELECT r.key, r.version, r.deleted, r.data
        FROM unnest(v_prefixes, v_users) AS p(prefix, user_id)
        CROSS JOIN LATERAL (
            WITH versioned AS MATERIALIZED (
                SELECT v.key, v.version, v.deleted, v.data
                FROM moa_entity_version v
                WHERE v.entity = 'alarm' AND v.key >= p.prefix AND v.key < p.prefix || chr(65535)
            )
            SELECT v.key, v.version, v.deleted, v.data FROM versioned v
            UNION ALL
            SELECT a.user_id::text || ':' || a.item_id::text, 0::bigint, false, NULL::jsonb
            FROM public.alarm a
            WHERE a.user_id = p.user_id AND a.item_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM versioned u WHERE u.key = a.user_id::text || ':' || a.item_id::text)
            OFFSET 0
        ) r;
END;
$$;
