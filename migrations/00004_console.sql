-- +goose Up
-- Operations console sessions. The cookie holds a random id; only its SHA-256 is stored, so a
-- leaked table does not let anyone in. Every replica reads the same rows: signing out anywhere
-- ends the session everywhere.
CREATE TABLE console_sessions (
    id_hash     text        PRIMARY KEY,
    -- The holder named by the ops token that signed in ('' for an unnamed token).
    actor       text        NOT NULL DEFAULT '',
    csrf_token  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);

-- Failed console sign-ins by client address, so that every replica slows the same address down.
CREATE TABLE console_signin_failures (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    address   text        NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX console_signin_failures_address ON console_signin_failures (address, failed_at);

-- The console's search box: out_contract_code across sub-merchants, and openid.
CREATE INDEX contracts_out_contract_code ON contracts (out_contract_code);
CREATE INDEX contracts_openid ON contracts (openid) WHERE openid <> '';
-- The overview's "last WeChat call failed" list reads only contracts with an error.
CREATE INDEX contracts_last_error ON contracts (updated_at) WHERE last_error IS NOT NULL;
-- The overview's reconciliation backlog reads recently expired sessions by expiry.
CREATE INDEX contracts_expired_at ON contracts (expired_at) WHERE state = 'expired';
-- The signing funnel counts events of one kind in a period.
CREATE INDEX contract_events_funnel ON contract_events (event, occurred_at);
-- A contract's notifications, and notifications by outcome in a period.
CREATE INDEX wechat_notifications_contract ON wechat_notifications (sub_mchid, out_contract_code);
CREATE INDEX wechat_notifications_received ON wechat_notifications (received_at);

-- +goose Down
DROP INDEX wechat_notifications_received;
DROP INDEX wechat_notifications_contract;
DROP INDEX contract_events_funnel;
DROP INDEX contracts_expired_at;
DROP INDEX contracts_last_error;
DROP INDEX contracts_openid;
DROP INDEX contracts_out_contract_code;
DROP TABLE console_signin_failures;
DROP TABLE console_sessions;
