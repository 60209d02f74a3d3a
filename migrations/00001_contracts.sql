-- +goose Up
CREATE TABLE contracts (
    id                       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sub_mchid                text        NOT NULL DEFAULT '',
    out_contract_code        text        NOT NULL,
    product                  text        NOT NULL CHECK (product IN ('papay', 'password_exempt')),
    -- '' only for a contract first learned of from WeChat, which does not say where it was signed.
    channel                  text        NOT NULL CHECK (channel IN ('', 'app', 'mini_program', 'h5', 'jsapi', 'web')),
    plan_id                  bigint,
    service_id               bigint,
    state                    text        NOT NULL CHECK (state IN ('created', 'session_issued', 'signed', 'expired', 'terminated')),
    version                  bigint      NOT NULL DEFAULT 1,
    session_id               text        NOT NULL DEFAULT '',
    session_expires_at       timestamptz,
    launch                   jsonb,
    params                   jsonb,
    params_hash              text        NOT NULL DEFAULT '',
    contract_id              text        NOT NULL DEFAULT '',
    openid                   text        NOT NULL DEFAULT '',
    user_display_name        text        NOT NULL DEFAULT '',
    contract_display_account text        NOT NULL DEFAULT '',
    signed_at                timestamptz,
    terminated_at            timestamptz,
    termination_mode         text        NOT NULL DEFAULT '',
    expired_at               timestamptz,
    last_operate_time        timestamptz,
    last_error               jsonb,
    -- A pre-sign call to WeChat under way holds the claim; concurrent callers wait for it.
    claim_token              text        NOT NULL DEFAULT '',
    claim_expires_at         timestamptz,
    -- An operator's termination under way at WeChat: {note, requested_at}.
    ops_termination          jsonb,
    -- When reconciliation should next ask WeChat about this contract, and how often it has.
    next_check_at            timestamptz,
    check_count              integer     NOT NULL DEFAULT 0,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT contracts_key UNIQUE (sub_mchid, out_contract_code),
    CONSTRAINT contracts_session_expiry_known CHECK (state <> 'session_issued' OR session_expires_at IS NOT NULL)
);

-- WeChat's contract id, once known, names one contract.
CREATE UNIQUE INDEX contracts_contract_id ON contracts (contract_id) WHERE contract_id <> '';
-- The expiry sweep reads only open sessions, so its cost follows the number of due rows.
CREATE INDEX contracts_session_expiry ON contracts (session_expires_at) WHERE state = 'session_issued';
-- Listing, newest pages by (created_at, id), with and without a state filter.
-- Reconciliation reads only open and recently expired sessions.
CREATE INDEX contracts_reconcile ON contracts (state, next_check_at) WHERE state IN ('session_issued', 'expired');
CREATE INDEX contracts_created ON contracts (created_at, id);
CREATE INDEX contracts_state_created ON contracts (state, created_at, id);

CREATE TABLE contract_events (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    contract_pk       bigint      NOT NULL REFERENCES contracts (id),
    sub_mchid         text        NOT NULL,
    out_contract_code text        NOT NULL,
    from_state        text        NOT NULL DEFAULT '',
    to_state          text        NOT NULL,
    event             text        NOT NULL CHECK (event IN ('issue_session', 'sign', 'expire', 'terminate')),
    source            text        NOT NULL,
    ignored           boolean     NOT NULL DEFAULT false,
    details           jsonb       NOT NULL DEFAULT '{}',
    occurred_at       timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX contract_events_contract ON contract_events (contract_pk, id);

-- History is append-only: refuse updates and deletes at the database.
-- +goose StatementBegin
CREATE FUNCTION contract_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'contract_events is append-only';
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER contract_events_append_only BEFORE UPDATE OR DELETE ON contract_events
    FOR EACH ROW EXECUTE FUNCTION contract_events_append_only();

CREATE TABLE wechat_notifications (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id   text        NOT NULL UNIQUE,
    event_type        text        NOT NULL,
    sub_mchid         text        NOT NULL DEFAULT '',
    out_contract_code text        NOT NULL DEFAULT '',
    create_time       timestamptz,
    resource          jsonb       NOT NULL,
    outcome           text        NOT NULL,
    delivery_count    integer     NOT NULL DEFAULT 1,
    received_at       timestamptz NOT NULL DEFAULT now(),
    last_received_at  timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE wechat_notifications;
DROP TABLE contract_events;
DROP FUNCTION contract_events_append_only();
DROP TABLE contracts;
