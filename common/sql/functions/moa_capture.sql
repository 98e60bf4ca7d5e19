-- moa_capture(entity, exchange, key_column [, key_column ...]): AFTER ROW trigger that records
-- the change in moa_entity_version and queues an event in moa_outbox, in the same transaction
-- as the change itself, whoever made it (the service or an operator with psql). The triggers
-- are created by each domain's capture migration (e.g. item/migrations/0010_item_capture.sql).
-- Each change is one statement (the version row's upsert feeds the outbox insert) and the
-- request id is read once.
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
