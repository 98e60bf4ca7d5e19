-- Views consumed from the user.views queue. event_id makes storing idempotent
-- (a redelivered or re-published view is stored once); recent_visit keeps each user's
-- latest view per item, which is what /visit shows.
CREATE TABLE IF NOT EXISTS visit (
    event_id    uuid        PRIMARY KEY,
    user_id     bigint      NOT NULL,
    item_id     bigint      NOT NULL,
    viewed_at   timestamptz NOT NULL,
    seq         bigint      NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS visit_by_user ON visit (user_id, viewed_at DESC);

CREATE TABLE IF NOT EXISTS recent_visit (
    user_id   bigint      NOT NULL,
    item_id   bigint      NOT NULL,
    viewed_at timestamptz NOT NULL,
    seq       bigint      NOT NULL,
    PRIMARY KEY (user_id, item_id)
);
CREATE INDEX IF NOT EXISTS recent_visit_latest ON recent_visit (user_id, viewed_at DESC, seq DESC);
