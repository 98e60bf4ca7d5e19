-- Outbox rows the broker would not take back off, so they never hold back the rows after them.
--
-- The relay drains the oldest rows first. A row the broker refuses (an exchange that does not
-- exist closes the channel, a nack, a view no queue is bound to) used to be taken again by
-- the next drain, fail again, and so stall every later event for good. Now a refused row
-- counts an attempt and waits until next_attempt_at (1 s, doubling, at most 60 s); rows that
-- have failed before are retried one at a time, so one bad row cannot fail its neighbours
-- again; fresh rows (attempts = 0) flow meanwhile. Nothing is dropped: a row leaves the
-- outbox only once the broker confirms it.
ALTER TABLE moa_outbox
    ADD COLUMN IF NOT EXISTS attempts int NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz,
    ADD COLUMN IF NOT EXISTS last_error text;

-- Only rows that failed are in this index, so the hot insert path does not maintain it.
CREATE INDEX IF NOT EXISTS moa_outbox_retry ON moa_outbox (next_attempt_at, id) WHERE attempts > 0;
