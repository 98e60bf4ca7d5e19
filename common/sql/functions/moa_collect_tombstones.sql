-- Tombstone collection and its retention are explained in common/sql/0022_collect_tombstones.sql
-- (the tables it uses) and store::CollectTombstones (who calls it).
--
-- Collects the tombstones older than p_retention; answers how many. Several instances may
-- call it: they take turns (advisory lock).
CREATE OR REPLACE FUNCTION moa_collect_tombstones(p_retention interval) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_bound     bigint;
    v_bound_at  timestamptz;
    v_collected bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(4242002);
    INSERT INTO moa_version_mark (at, version)
    SELECT clock_timestamp(), coalesce(max(version), 0) FROM moa_entity_version
    ON CONFLICT (at) DO NOTHING;
    SELECT at, version INTO v_bound_at, v_bound
    FROM moa_version_mark WHERE at <= clock_timestamp() - p_retention ORDER BY at DESC LIMIT 1;
    IF v_bound IS NULL THEN
        RETURN 0;
    END IF;
    -- Marks older than the one used are not needed again.
    DELETE FROM moa_version_mark WHERE at < v_bound_at;
    WITH newest AS (
        SELECT entity, max(version) AS version FROM moa_entity_version GROUP BY entity
    ), gone AS (
        DELETE FROM moa_entity_version t
        USING newest n
        WHERE t.deleted AND t.version <= v_bound AND t.entity = n.entity AND t.version < n.version
        RETURNING t.entity, t.version
    ), horizon AS (
        INSERT INTO moa_tombstone_horizon AS h (entity, version)
        SELECT entity, max(version) FROM gone GROUP BY entity
        ON CONFLICT (entity) DO UPDATE SET version = greatest(h.version, EXCLUDED.version)
        RETURNING 1
    )
    SELECT count(*) INTO v_collected FROM gone;
    RETURN v_collected;
END;
$$;
