-- +goose Up
-- A notification that verifies and decrypts but breaks a field rule is kept
-- in the inbox with outcome 'rejected': why, and its plaintext exactly as
-- received (it may hold bytes jsonb cannot take, such as \u0000).
ALTER TABLE wechat_notifications
    ADD COLUMN reason       text,
    ADD COLUMN raw_resource bytea;

-- +goose Down
ALTER TABLE wechat_notifications
    DROP COLUMN raw_resource,
    DROP COLUMN reason;
