-- A leaner outbox and capture, for write throughput.
--
-- Delete on publish: the relay deletes the rows it drains in the transaction that publishes
-- them (DELETE ... FOR UPDATE SKIP LOCKED ... RETURNING, committed after the broker's
-- confirms; rolled back if any is refused). A row is written once and deleted once, instead of
-- being rewritten whole by a claim and a mark and deleted an hour later by a purge; every row
-- in the table is unsent, and a relay that dies mid-drain releases its rows with its session.
DELETE FROM moa_outbox WHERE sent_at IS NOT NULL;
DROP INDEX IF EXISTS moa_outbox_unsent;
ALTER TABLE moa_outbox DROP COLUMN IF EXISTS claimed_until, DROP COLUMN IF EXISTS sent_at;

-- An entity's key: its key columns' values joined by ':' ("user_id:item_id"), 'null' for a
-- null, as 0001 built it.
CREATE OR REPLACE FUNCTION moa_capture_key(p_row jsonb, p_columns text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(coalesce(p_row ->> k.c, 'null'), ':' ORDER BY k.n)
    FROM unnest(p_columns) WITH ORDINALITY AS k(c, n)
$$;

-- The capture trigger as before (see 0001), but each change is one statement (the version
-- row's upsert feeds the outbox insert) and the request id is read once.
CREATE OR REPLACE FUNCTION moa_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_entity     text := TG_ARGV[0];
    v_exchange   text := TG_ARGV[1];
    v_request_id text := nullif(current_setting('moa.request_id', true), '');
    v_old        jsonb;
    v_new        jsonb;
    v_old_key    text;
    v_new_key    text;
    -- The changes to record: the old key's removal and/or the new key's state.
    v_keys       text[] := '{}';
    v_deleted    boolean[] := '{}';
    v_data       jsonb[] := '{}';
    i            int;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        v_old := to_jsonb(OLD);
        v_old_key := moa_capture_key(v_old, TG_ARGV[2:]);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        v_new := to_jsonb(NEW);
        v_new_key := moa_capture_key(v_new, TG_ARGV[2:]);
    END IF;

    -- A delete, or an update that moved the row to another key, removes the old key.
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND v_old_key <> v_new_key) THEN
        v_keys := v_keys || v_old_key;
        v_deleted := v_deleted || true;
        v_data := v_data || v_old;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        v_keys := v_keys || v_new_key;
        v_deleted := v_deleted || false;
        v_data := v_data || v_new;
    END IF;

    FOR i IN 1 .. coalesce(array_length(v_keys, 1), 0) LOOP
        WITH v AS (
            INSERT INTO moa_entity_version (entity, key, version, deleted, data)
            VALUES (v_entity, v_keys[i], nextval('moa_version_seq'), v_deleted[i], v_data[i])
            ON CONFLICT (entity, key) DO UPDATE
                SET version = EXCLUDED.version, deleted = EXCLUDED.deleted, data = EXCLUDED.data
            RETURNING version)
        INSERT INTO moa_outbox (exchange, payload, request_id)
        SELECT v_exchange, jsonb_build_object('entity', v_entity, 'key', v_keys[i],
                   'version', v.version, 'deleted', v_deleted[i], 'data', v_data[i]), v_request_id
        FROM v;
    END LOOP;

    -- Wake the relays for changes made outside the services (an operator's psql). A service
    -- wakes its own relay in process after commit instead: NOTIFY serializes every committing
    -- transaction of the database on one lock, which would cap write throughput.
    IF v_request_id IS NULL THEN
        PERFORM pg_notify('moa_outbox', v_exchange);
    END IF;
    RETURN NULL;
END;
$$;
