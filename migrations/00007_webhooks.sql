-- +goose Up
-- Webhooks: the feed pushed to the merchant's app servers (package
-- delivery, api.md "Webhooks").

-- Every history row carries the contract's version once the row was
-- recorded, assigned under the contract's row lock (domain.Record.Version):
-- feed order can differ from the order one contract's changes were applied,
-- so receivers act only on a version higher than the last they handled.
-- Added without a default (no rewrite), then existing rows backfilled past
-- the append-only trigger: the version a contract had after a row is the
-- number of its applied (not ignored) rows up to it, which is how
-- domain.Contract.Apply counts versions. The column stays nullable for
-- replicas older than this migration, which keep writing during a rolling
-- upgrade; every row this migration and newer replicas write has one.
ALTER TABLE contract_events ADD COLUMN contract_version bigint;
ALTER TABLE contract_events DISABLE TRIGGER contract_events_append_only;
UPDATE contract_events e SET contract_version = v.version
FROM (
    SELECT id, count(*) FILTER (WHERE NOT ignored) OVER (PARTITION BY contract_pk ORDER BY id) AS version
    FROM contract_events
) v
WHERE e.id = v.id AND e.contract_version IS NULL;
ALTER TABLE contract_events ENABLE TRIGGER contract_events_append_only;

-- Replay from a time (rows recorded at or after it).
CREATE INDEX contract_events_recorded_at ON contract_events (recorded_at);

-- One row per endpoint. The secrets are AES-256-GCM ciphertexts under
-- CONTRACTD_WEBHOOK_KEY (never the secret in clear); the previous secret
-- keeps signing beside the new one until previous_secret_until.
--
-- cursor is the feed position delivered so far (a feed cursor, "" for the
-- feed's beginning). The batch in flight, when there is one, is saved
-- before its first attempt: delivery_id and its range (cursor, through],
-- so that every retry, by whichever replica, sends the same events.
--
-- One replica delivers an endpoint at a time: the holder of lease_token
-- until lease_expires_at, both set and compared on Postgres's clock.
CREATE TABLE webhook_endpoints (
    id                          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    url                         text        NOT NULL,
    description                 text        NOT NULL DEFAULT '',
    paused                      boolean     NOT NULL DEFAULT false,
    secret_sealed               bytea       NOT NULL,
    previous_secret_sealed      bytea,
    previous_secret_until       timestamptz,
    cursor                      text        NOT NULL,
    created_by                  text        NOT NULL,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    delivery_id                 uuid,
    delivery_through            text,
    delivery_count              integer,
    delivery_attempts           integer     NOT NULL DEFAULT 0,
    next_attempt_at             timestamptz,
    lease_token                 text,
    lease_expires_at            timestamptz,
    last_attempt_at             timestamptz,
    last_status                 integer,
    last_error                  text,
    last_latency_ms             integer,
    CHECK ((delivery_id IS NULL) = (delivery_through IS NULL))
);

-- Every attempt, kept 30 days (pruned in batches by attempted_at).
CREATE TABLE webhook_attempts (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id    uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    delivery_id    uuid        NOT NULL,
    kind           text        NOT NULL CHECK (kind IN ('events', 'ping')),
    event_count    integer     NOT NULL DEFAULT 0,
    attempted_at   timestamptz NOT NULL,
    status         integer     NOT NULL DEFAULT 0,
    latency_ms     integer     NOT NULL DEFAULT 0,
    error          text        NOT NULL DEFAULT '',
    response       text        NOT NULL DEFAULT ''
);
CREATE INDEX webhook_attempts_endpoint ON webhook_attempts (endpoint_id, id DESC);
CREATE INDEX webhook_attempts_attempted_at ON webhook_attempts (attempted_at);

-- Every move of an endpoint's cursor by an operator (replay), with who
-- made it.
CREATE TABLE webhook_cursor_moves (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id uuid        NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    from_cursor text        NOT NULL,
    to_cursor   text        NOT NULL,
    actor       text        NOT NULL,
    moved_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_cursor_moves_endpoint ON webhook_cursor_moves (endpoint_id, id);

-- +goose Down
DROP TABLE webhook_cursor_moves;
DROP TABLE webhook_attempts;
DROP TABLE webhook_endpoints;
DROP INDEX contract_events_recorded_at;
ALTER TABLE contract_events DROP COLUMN contract_version;
