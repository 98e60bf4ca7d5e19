-- The owner epoch: an identity of this database's history, carried with every version it
-- hands out (change events, snapshot pages, digests, RPC answers, persisted replica rows).
-- Versions restart when a database is re-created or restored, so a version alone cannot tell a
-- replica that its rows are from another history; a new epoch means "forget what you hold
-- from this owner and re-read it".
--
-- What changes the epoch:
--   * initdb (a new cluster, e.g. a restore into a fresh server): system_identifier;
--   * a point-in-time recovery or a promoted standby: the timeline;
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

-- Computed once per session and kept in the session setting moa.epoch: reading the control
-- file (pg_control_checkpoint) took up to 250 ms under load, on every statement that carries
-- an epoch. None of its parts can change during a session (a promoted standby's sessions were
-- read-only; a restore restarts the server or re-creates the database).
CREATE OR REPLACE FUNCTION moa_epoch() RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_epoch text := current_setting('moa.epoch', true);
BEGIN
    IF coalesce(v_epoch, '') = '' THEN
        SELECT left(md5(concat_ws('/',
                   (SELECT system_identifier FROM pg_control_system()),
                   (SELECT timeline_id FROM pg_control_checkpoint()),
                   (SELECT oid FROM pg_database WHERE datname = current_database()),
                   (SELECT seed FROM moa_epoch_seed))), 16)
        INTO v_epoch;
        PERFORM set_config('moa.epoch', v_epoch, false);
    END IF;
    RETURN v_epoch;
END;
$$;

-- The newest version this database has handed out (committed or not): a replica holding a
-- higher one holds rows of another history, or forged ones.
CREATE OR REPLACE FUNCTION moa_max_version() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM moa_version_seq
$$;

-- Persisted replicas remember the owner epoch they belong to; rows of another epoch are
-- never loaded.
ALTER TABLE moa_replica ADD COLUMN IF NOT EXISTS epoch text NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS moa_replica_epoch (
    entity text PRIMARY KEY,
    epoch  text NOT NULL
);
