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

-- moa_tombstone_horizon(): defined in common/sql/functions/moa_tombstone_horizon.sql (applied on every start).

-- moa_collect_tombstones(): defined in common/sql/functions/moa_collect_tombstones.sql (applied on every start).
