-- Operations acknowledged as PENDING that wait for the issuer: renewals and replacements sent
-- without card data (Get Card Credentials, outbound.md §4), digitizations needing consumer data
-- (Get Consumer Information, §3). The worker claims them like notifications: under a lease,
-- retried on the same schedule. state: PENDING, DONE or FAILED.

CREATE TABLE pending_operations (
    operation_id     TEXT    PRIMARY KEY,
    issuer_id        TEXT    NOT NULL,
    card_id          TEXT    NOT NULL,
    operation        TEXT    NOT NULL,
    reason_code      TEXT,
    reason           TEXT,
    new_card_id      TEXT,
    new_card_state   TEXT    NOT NULL,
    digital_card_id  TEXT,
    actor            TEXT    NOT NULL,
    correlation_id   TEXT    NOT NULL,
    requested_at     INTEGER  NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'PENDING',
    attempts         INTEGER  NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    last_error       TEXT,
    lease_owner      TEXT,
    lease_until      INTEGER
) STRICT;

CREATE INDEX pending_operations_due ON pending_operations (next_attempt_at) WHERE state = 'PENDING';
