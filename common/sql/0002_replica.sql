-- Replicas of other domains' entities, persisted so a service restarted while an owner is
-- down still answers correctly (the owner being down means its data cannot change). Same
-- shape as the owner's moa_entity_version; a row is only ever replaced by a newer version.
CREATE TABLE IF NOT EXISTS moa_replica (
    entity  text    NOT NULL,
    key     text    NOT NULL,
    version bigint  NOT NULL,
    deleted boolean NOT NULL,
    data    jsonb   NOT NULL,
    PRIMARY KEY (entity, key)
);
