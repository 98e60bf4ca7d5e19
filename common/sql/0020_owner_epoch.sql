-- The owner epoch: an identity of this database's history, carried with every version it
-- hands out (change events, snapshot pages, digests, RPC answers, persisted replica rows).
-- Versions restart when a database is re-created or restored, so a version alone cannot tell a
-- replica that its rows are from another history; a new epoch means "forget what you hold
-- from this owner and re-read it".
--
-- What changes the epoch:
--   * initdb (a new cluster, e.g. a restore into a fresh server): system_identifier;
--   * a point-in-time recovery: the timeline switches a recovery target ended (not those of a
--     promoted standby: a failover keeps the epoch; see common/sql/functions/moa_epoch.sql);
--   * DROP/CREATE DATABASE and a reload (scripts/up --reset, a logical restore into a new
--     database): the database's oid, and the seed row below, written when the migrations run.
-- A logical restore into the same database can bring the seed back with the old value; the
-- replicas also treat "the owner's newest version is older than one I hold" as a restore
-- (see common/src/replica/mod.rs), and their periodic digest comparison catches the rest.
CREATE TABLE IF NOT EXISTS moa_epoch_seed (
    one        boolean PRIMARY KEY DEFAULT true CHECK (one),
    seed       uuid        NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO moa_epoch_seed DEFAULT VALUES ON CONFLICT DO NOTHING;

-- moa_epoch(): defined in common/sql/functions/moa_epoch.sql (applied on every start).

-- moa_max_version(): defined in common/sql/functions/moa_max_version.sql (applied on every start).

-- Persisted replicas remember the owner epoch they belong to; rows of another epoch are
-- never loaded.
ALTER TABLE moa_replica ADD COLUMN IF NOT EXISTS epoch text NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS moa_replica_epoch (
    entity text PRIMARY KEY,
    epoch  text NOT NULL
);
