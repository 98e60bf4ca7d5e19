-- Tombstones are collected once nothing needs them (see store::CollectTombstones).
--
-- A tombstone (a deleted row kept in moa_entity_version with its version) tells a replica that
-- a key it holds was deleted: through the change event first, then through snapshots and
-- digests to a replica that was away. Kept for ever they grow with every deletion ever made.
-- They are collected once older than a retention period (TOMBSTONE_RETENTION, days), which
-- is read from version marks: each collection records the newest committed version and the
-- time, and tombstones up to the newest mark older than the retention are collected.
--
-- A replica that was away longer than that may hold a key whose tombstone is gone; a digest
-- catch-up cannot tell it (the owner simply has no row for the key), so the owner answers
-- Query::Epoch with its horizon per entity: the newest collected tombstone's version. A
-- replica whose newest version is below the horizon rebuilds from the owner's snapshot
-- instead of catching up (common/src/replica/mod.rs, rebuild_reason). The newest row of each
-- entity is never collected, so a rebuilt (or up-to-date) replica's newest version is always
-- at or above the horizon, and a replica never rebuilds twice for the same collection.
CREATE TABLE IF NOT EXISTS moa_version_mark (
    at      timestamptz PRIMARY KEY,
    version bigint      NOT NULL
);

CREATE TABLE IF NOT EXISTS moa_tombstone_horizon (
    entity  text   PRIMARY KEY,
    version bigint NOT NULL
);

-- Collection reads only tombstones.
CREATE INDEX IF NOT EXISTS moa_entity_version_tombstones ON moa_entity_version (version) WHERE deleted;

CREATE OR REPLACE FUNCTION moa_tombstone_horizon(p_entity text) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT version FROM moa_tombstone_horizon WHERE entity = p_entity), 0)
$$;

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
