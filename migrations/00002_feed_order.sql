-- +goose Up
-- The feed (GET /v1/events) is ordered by the writing transaction's id and
-- then the row id, and serves only rows whose transaction is older than
-- every transaction still running (the reader's snapshot xmin): those can no
-- longer be joined by a row that sorts before them. This replaces the
-- database-wide advisory lock every history insert used to take.
-- Rows written before this migration all committed long ago: xid 0 keeps
-- them first, in id order. Two steps, so that adding the column does not
-- rewrite the table.
ALTER TABLE contract_events ADD COLUMN xid bigint NOT NULL DEFAULT 0;
ALTER TABLE contract_events ALTER COLUMN xid SET DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX contract_events_feed ON contract_events (xid, id);

-- +goose Down
DROP INDEX contract_events_feed;
ALTER TABLE contract_events DROP COLUMN xid;
