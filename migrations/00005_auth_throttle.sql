-- +goose Up
-- Wrong tokens by client address, for the API's bearer tokens and the console's sign-in alike:
-- one row per address (an IPv6 client by its /64), counting its attempts in the window that
-- began at its first failure. One INSERT ... ON CONFLICT DO UPDATE counts an attempt and returns
-- the count the decision is taken on, so concurrent attempts on any replica each see their own
-- place in line (store.CountAuthAttempt).
CREATE TABLE auth_failures (
    address      text        PRIMARY KEY,
    window_start timestamptz NOT NULL,
    failures     bigint      NOT NULL
);
-- Rows whose window has passed are forgotten oldest first.
CREATE INDEX auth_failures_window ON auth_failures (window_start);

-- A console session is bound to the ops token that opened it: HMAC-SHA256 keyed with that token
-- over the session's random id. Each request checks that a configured ops token still gives this
-- value, so a session ends wherever its token is no longer configured. The table holds neither
-- the token nor the id (only the id's SHA-256), so a dump of it says nothing about the token.
-- Sessions opened before this migration (or by a replica older than it) have no binding and are
-- refused: their operators sign in again.
ALTER TABLE console_sessions ADD COLUMN token_mac bytea NOT NULL DEFAULT ''::bytea;

-- console_signin_failures (00004) is read and written only by replicas older than this
-- migration, which keep running beside new ones during a rolling upgrade; a later migration
-- drops it.

-- +goose Down
ALTER TABLE console_sessions DROP COLUMN token_mac;
DROP TABLE auth_failures;
