-- The visit book keeps what /visit needs (see user/src/store.rs, TrimVisits).
--
-- visit: every stored view, keyed by its event id so a redelivered view is stored once. Kept
-- for VISIT_RETENTION (30 days, by the time it was received): long past any redelivery (a
-- view waits in user.views or item_db's outbox for at most an outage), and a month of views
-- an operator can still look at. A view redelivered after that would be stored again, and
-- change nothing: recent_visit keeps the latest view per item, which it already holds.
-- recent_visit: each user's latest view per item; /visit shows the newest 3, so older rows
-- are removed (their deletions reach every instance's book through user.visits like any
-- change). A late view older than a user's newest 3 is stored and trimmed again.
CREATE INDEX IF NOT EXISTS visit_received ON visit (received_at);

-- moa_trim_visits(): defined in user/sql/functions/moa_trim_visits.sql (applied on every start).
