-- Complete read models of other domains' kinds (common/src/replica/read_model.rs): what this
-- service needs of every user and every alarm set, on disk in its own database, behind the
-- bounded memory caches. A miss in memory is an index probe here, not a question to the owner.
--
-- One row per owner row, in the kind's own terms, not the owner's row:
-- - grp, member: the group the row belongs to and its place in it (a user: its id, 0; an
--   alarm: its user id, its item id). The primary key answers "this user's alarms".
-- - lookup: the name a lookup finds the row by (a user's access token; NULL for alarms and
--   for tombstones), indexed where present.
-- - kept: what the kind keeps of the row as JSON (a user: id, name, token), NULL if nothing.
-- - version, deleted: the owner's version, tombstones included, so a late event never
--   overwrites a newer row and a deletion is not undone by an older page.
CREATE TABLE IF NOT EXISTS moa_read_model (
    kind    text    NOT NULL,
    grp     bigint  NOT NULL,
    member  bigint  NOT NULL,
    version bigint  NOT NULL,
    deleted boolean NOT NULL DEFAULT false,
    lookup  text,
    kept    text,
    PRIMARY KEY (kind, grp, member)
);
CREATE INDEX IF NOT EXISTS moa_read_model_lookup ON moa_read_model (kind, lookup) WHERE lookup IS NOT NULL;
-- The digest a catch-up compares with the owner's, and the buckets it replaces, read the
-- versioned rows only (an alarm loaded from a dump is version 0 until it changes).
CREATE INDEX IF NOT EXISTS moa_read_model_versioned ON moa_read_model (kind, version) WHERE version > 0;

-- Per kind: the owner epoch the rows belong to, whether the backfill is complete, where it
-- stands (the owner's key of the last row copied: a backfill resumes after it), and the newest
-- version written (compared with the owner's newest and its tombstone horizon). generation
-- counts the resets: instances of one service share this table, a reset is made once, and a
-- backfill page of an older generation is refused (its instance reads the state again).
CREATE TABLE IF NOT EXISTS moa_read_model_state (
    kind         text        PRIMARY KEY,
    epoch        text        NOT NULL,
    complete     boolean     NOT NULL DEFAULT false,
    cursor       text,
    copied       bigint      NOT NULL DEFAULT 0,
    max_version  bigint      NOT NULL DEFAULT 0,
    generation   bigint      NOT NULL DEFAULT 1,
    started_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz
);
