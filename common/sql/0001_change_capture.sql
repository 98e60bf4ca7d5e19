-- Change-data capture shared by every domain database (our own objects, prefixed moa_).
--
-- moa_entity_version holds, for every entity this database owns, its current state and a
-- version that grows with every change; deleted entities stay as tombstones so a late, older
-- event can be told apart from news. Snapshots and RPC answers read it, so what they return
-- always carries the version consumers compare against.
-- moa_outbox holds every event to publish until the broker has confirmed it.

CREATE SEQUENCE IF NOT EXISTS moa_version_seq;

CREATE TABLE IF NOT EXISTS moa_entity_version (
    entity   text    NOT NULL,
    key      text    NOT NULL,
    version  bigint  NOT NULL,
    deleted  boolean NOT NULL DEFAULT false,
    data     jsonb   NOT NULL,
    PRIMARY KEY (entity, key)
);

CREATE TABLE IF NOT EXISTS moa_outbox (
    id            bigserial PRIMARY KEY,
    event_id      uuid        NOT NULL DEFAULT gen_random_uuid(),
    exchange      text        NOT NULL,
    payload       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    claimed_until timestamptz,
    sent_at       timestamptz,
    -- The HTTP request that caused the change (set with set_config('moa.request_id', ..., true)),
    -- carried as the x-request-id AMQP header so one user action can be followed across services.
    request_id    text
);
CREATE INDEX IF NOT EXISTS moa_outbox_unsent ON moa_outbox (id) WHERE sent_at IS NULL;

-- moa_capture(entity, exchange, key_column [, key_column ...]): AFTER ROW trigger that records
-- the change in moa_entity_version and queues an event in moa_outbox, in the same transaction
-- as the change itself, whoever made it (the service or an operator with psql).
CREATE OR REPLACE FUNCTION moa_capture() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_entity   text := TG_ARGV[0];
    v_exchange text := TG_ARGV[1];
    v_old      jsonb;
    v_new      jsonb;
    v_old_key  text;
    v_new_key  text;
    v_version  bigint;
    i          int;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        v_old := to_jsonb(OLD);
        v_old_key := '';
        FOR i IN 2 .. TG_NARGS - 1 LOOP
            v_old_key := v_old_key || CASE WHEN i > 2 THEN ':' ELSE '' END || coalesce(v_old ->> TG_ARGV[i], 'null');
        END LOOP;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        v_new := to_jsonb(NEW);
        v_new_key := '';
        FOR i IN 2 .. TG_NARGS - 1 LOOP
            v_new_key := v_new_key || CASE WHEN i > 2 THEN ':' ELSE '' END || coalesce(v_new ->> TG_ARGV[i], 'null');
        END LOOP;
    END IF;

    -- A delete, or an update that moved the row to another key, removes the old key.
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND v_old_key <> v_new_key) THEN
        v_version := nextval('moa_version_seq');
        INSERT INTO moa_entity_version (entity, key, version, deleted, data)
        VALUES (v_entity, v_old_key, v_version, true, v_old)
        ON CONFLICT (entity, key) DO UPDATE
            SET version = EXCLUDED.version, deleted = true, data = EXCLUDED.data;
        INSERT INTO moa_outbox (exchange, payload, request_id)
        VALUES (v_exchange, jsonb_build_object('entity', v_entity, 'key', v_old_key,
                'version', v_version, 'deleted', true, 'data', v_old),
                nullif(current_setting('moa.request_id', true), ''));
    END IF;

    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        v_version := nextval('moa_version_seq');
        INSERT INTO moa_entity_version (entity, key, version, deleted, data)
        VALUES (v_entity, v_new_key, v_version, false, v_new)
        ON CONFLICT (entity, key) DO UPDATE
            SET version = EXCLUDED.version, deleted = false, data = EXCLUDED.data;
        INSERT INTO moa_outbox (exchange, payload, request_id)
        VALUES (v_exchange, jsonb_build_object('entity', v_entity, 'key', v_new_key,
                'version', v_version, 'deleted', false, 'data', v_new),
                nullif(current_setting('moa.request_id', true), ''));
    END IF;

    -- Wake the relays for changes made outside the services (an operator's psql). A service
    -- wakes its own relay in process after commit instead: NOTIFY serializes every committing
    -- transaction of the database on one lock, which would cap write throughput.
    IF coalesce(current_setting('moa.request_id', true), '') = '' THEN
        PERFORM pg_notify('moa_outbox', v_exchange);
    END IF;
    RETURN NULL;
END;
$$;
