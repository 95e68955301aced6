-- Consumers, cards, their history, the operations outbox and idempotency records.
-- Card data never sits here in clear: `credentials_sealed` holds PAN, expiry, CVV and name sealed
-- under the master key; `pan_fingerprint` is an HMAC of the PAN for uniqueness; only `last4` is clear.

CREATE TABLE consumers (
    issuer_id             TEXT    NOT NULL,
    consumer_id           TEXT    NOT NULL,
    state                 TEXT    NOT NULL,
    personal_information  TEXT,             -- JSON, absent when the issuer keeps it to itself
    created_at            BIGINT  NOT NULL,
    updated_at            BIGINT  NOT NULL,
    PRIMARY KEY (issuer_id, consumer_id)
);

CREATE TABLE cards (
    issuer_id           TEXT    NOT NULL,
    card_id             TEXT    NOT NULL,
    consumer_id         TEXT    NOT NULL,
    card_product_id     TEXT    NOT NULL,
    scheme              TEXT    NOT NULL,
    last4               TEXT    NOT NULL,
    pan_fingerprint     BYTEA    NOT NULL,
    credentials_sealed  BYTEA    NOT NULL,
    state               TEXT    NOT NULL,
    suspended_for       TEXT,
    ongoing_operation   TEXT,
    origin              TEXT    NOT NULL,
    cardholder_name     TEXT,
    cardholder_name2    TEXT,
    accounts            TEXT,              -- JSON, Create card only
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL,
    PRIMARY KEY (issuer_id, card_id)
);

CREATE INDEX cards_by_pan ON cards (issuer_id, pan_fingerprint);
CREATE INDEX cards_by_consumer ON cards (issuer_id, consumer_id);

-- PANs that were deleted or replaced: never registered again [D1].
CREATE TABLE barred_pans (
    issuer_id        TEXT    NOT NULL,
    pan_fingerprint  BYTEA    NOT NULL,
    barred_at        BIGINT  NOT NULL,
    PRIMARY KEY (issuer_id, pan_fingerprint)
);

CREATE TABLE card_history (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    issuer_id       TEXT    NOT NULL,
    card_id         TEXT    NOT NULL,
    operation_id    TEXT    NOT NULL,
    operation       TEXT    NOT NULL,
    from_state      TEXT,
    to_state        TEXT    NOT NULL,
    reason_code     TEXT,
    reason          TEXT,
    actor           TEXT    NOT NULL,
    correlation_id  TEXT    NOT NULL,
    at              BIGINT  NOT NULL
);

CREATE INDEX card_history_by_card ON card_history (issuer_id, card_id, seq);

-- The outbox: one row per operation to notify the issuer of, in the order they happened.
CREATE TABLE operations (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    issuer_id         TEXT    NOT NULL,
    operation_id      TEXT    NOT NULL UNIQUE,
    card_id           TEXT    NOT NULL,
    operation         TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    start_time        BIGINT  NOT NULL,
    end_time          BIGINT,
    details           TEXT,                -- JSON
    delivery_state    TEXT    NOT NULL DEFAULT 'PENDING',
    created_at        BIGINT  NOT NULL
);

CREATE INDEX operations_by_issuer ON operations (issuer_id, delivery_state, seq);

CREATE TABLE idempotency_keys (
    issuer_id     TEXT    NOT NULL,
    route         TEXT    NOT NULL,
    key           TEXT    NOT NULL,
    request_hash  BYTEA    NOT NULL,
    outcome       TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    PRIMARY KEY (issuer_id, route, key)
);
