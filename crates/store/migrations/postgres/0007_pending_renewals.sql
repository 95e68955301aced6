-- Renewals and replacements sent without card data, waiting for the issuer's Get Card
-- Credentials (outbound.md §4). The worker claims them like notifications: under a lease, retried
-- on the same schedule. state: PENDING, DONE or FAILED.

CREATE TABLE pending_renewals (
    operation_id     TEXT    PRIMARY KEY,
    issuer_id        TEXT    NOT NULL,
    card_id          TEXT    NOT NULL,
    operation        TEXT    NOT NULL,
    reason_code      TEXT    NOT NULL,
    reason           TEXT,
    new_card_id      TEXT,
    new_card_state   TEXT    NOT NULL,
    actor            TEXT    NOT NULL,
    correlation_id   TEXT    NOT NULL,
    requested_at     BIGINT  NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'PENDING',
    attempts         BIGINT  NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    last_error       TEXT,
    lease_owner      TEXT,
    lease_until      BIGINT
);

CREATE INDEX pending_renewals_due ON pending_renewals (next_attempt_at) WHERE state = 'PENDING';
