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

-- moa_capture(): defined in common/sql/functions/moa_capture.sql (applied on every start).
