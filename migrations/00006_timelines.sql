-- +goose Up
-- The feed across a failover (store.Feed). A standby promoted after its
-- primary died may lack the primary's last transactions, and it hands out
-- their transaction ids (and bigserial ids) again, so ordering the feed by
-- (xid, id) alone would sort new rows below positions readers have already
-- passed. Each history row now records the timeline of the server that
-- wrote it; a promotion starts a new, greater timeline, and the feed is
-- ordered by (timeline, xid, id).
--
-- The writer's timeline as the database sees it: the first 8 hex digits of
-- the name of the WAL file being written. Verified on Postgres 15 that it
-- moves from 1 to 2 when a standby is promoted (pg_ctl promote), before the
-- end-of-recovery checkpoint that pg_control_checkpoint() would wait for.
-- It can only be computed on a primary (pg_walfile_name refuses during
-- recovery), which is where every write and the feed happen.
-- +goose StatementBegin
CREATE FUNCTION contractd_timeline() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::bigint
$$;
-- +goose StatementEnd

-- Rows written before this migration count as timeline 0: every one of them
-- committed long ago (this ALTER waited for their writers), so they come
-- first, in (xid, id) order. A constant default first, so that adding the
-- column does not rewrite the table, then the writer's timeline.
ALTER TABLE contract_events ADD COLUMN timeline bigint NOT NULL DEFAULT 0;
ALTER TABLE contract_events ALTER COLUMN timeline SET DEFAULT contractd_timeline();
CREATE INDEX contract_events_feed_timeline ON contract_events (timeline, xid, id);
-- contract_events_feed (xid, id) serves replicas older than this migration,
-- which keep running beside new ones during a rolling upgrade; a later
-- migration drops it.

-- Every history row's id for ever, even when a failover loses it and its
-- bigserial id is handed out again: what receivers dedupe on and what a
-- feed cursor names, so that a cursor whose row was lost is recognised.
-- Added without a default (no rewrite), then the default for new rows,
-- then existing rows backfilled past the append-only trigger, which stays
-- in force for everything else.
ALTER TABLE contract_events ADD COLUMN event_id uuid;
ALTER TABLE contract_events ALTER COLUMN event_id SET DEFAULT gen_random_uuid();
ALTER TABLE contract_events DISABLE TRIGGER contract_events_append_only;
UPDATE contract_events SET event_id = gen_random_uuid() WHERE event_id IS NULL;
ALTER TABLE contract_events ENABLE TRIGGER contract_events_append_only;
ALTER TABLE contract_events ALTER COLUMN event_id SET NOT NULL;
CREATE UNIQUE INDEX contract_events_event_id ON contract_events (event_id);

-- The timelines the database has been seen on, by any replica
-- (lifecycle.Service.WatchTimeline). The replica whose insert of a new
-- timeline wins schedules the healing of what the promotion may have lost;
-- the timeline this migration runs on is recorded now, so that only a
-- later promotion heals.
CREATE TABLE timelines (
    timeline      bigint      PRIMARY KEY,
    first_seen_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO timelines (timeline) VALUES (contractd_timeline());

-- A contract to ask WeChat about because a failover may have lost what it
-- told us (an acknowledged notification, a termination): set by the
-- healing, cleared when the check is claimed. NULL everywhere else.
ALTER TABLE contracts ADD COLUMN heal_due_at timestamptz;
CREATE INDEX contracts_heal_due ON contracts (heal_due_at) WHERE heal_due_at IS NOT NULL;

-- +goose Down
DROP INDEX contracts_heal_due;
ALTER TABLE contracts DROP COLUMN heal_due_at;
DROP TABLE timelines;
DROP INDEX contract_events_event_id;
ALTER TABLE contract_events DROP COLUMN event_id;
DROP INDEX contract_events_feed_timeline;
ALTER TABLE contract_events DROP COLUMN timeline;
DROP FUNCTION contractd_timeline();
