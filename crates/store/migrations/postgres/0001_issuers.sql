-- Issuers and what they were onboarded with. Timestamps are microseconds since the Unix epoch (UTC),
-- the same in both backends so that one set of queries serves both.

CREATE TABLE issuers (
    issuer_id                      TEXT    NOT NULL PRIMARY KEY,
    name                           TEXT    NOT NULL,
    callback_base_url              TEXT,
    callback_token_url             TEXT,
    callback_client_id             TEXT,
    callback_client_secret_sealed  BYTEA,
    callback_scope                 TEXT,
    callback_max_batch_size        BIGINT,
    callback_stores_consumer_data  BOOLEAN,
    wallet_server_base_url         TEXT,
    wallet_server_pods             TEXT,    -- JSON object: x-pod value -> base URL
    created_at                     BIGINT  NOT NULL,
    updated_at                     BIGINT  NOT NULL
);

CREATE TABLE assertion_keys (
    issuer_id   TEXT  NOT NULL REFERENCES issuers (issuer_id),
    kid         TEXT  NOT NULL,
    public_key  BYTEA NOT NULL,             -- SEC1 uncompressed P-256 point
    PRIMARY KEY (issuer_id, kid)
);

CREATE TABLE card_products (
    issuer_id              TEXT    NOT NULL REFERENCES issuers (issuer_id),
    card_product_id        TEXT    NOT NULL,
    scheme                 TEXT    NOT NULL,
    authorisation_mode     TEXT    NOT NULL,
    bin_from               TEXT,
    bin_to                 TEXT,
    physical               BOOLEAN NOT NULL,
    validity_years         BIGINT  NOT NULL,
    used_for_transactions  BOOLEAN NOT NULL,
    PRIMARY KEY (issuer_id, card_product_id)
);

-- cardplane-side encryption keys: the public half in clear, the private scalar sealed under the
-- master key. At most one active (not retired) key per issuer.
CREATE TABLE encryption_keys (
    issuer_id           TEXT   NOT NULL REFERENCES issuers (issuer_id),
    kid                 TEXT   NOT NULL,
    public_key          BYTEA  NOT NULL,
    sealed_private_key  BYTEA  NOT NULL,
    created_at          BIGINT NOT NULL,
    retired_at          BIGINT,
    PRIMARY KEY (issuer_id, kid)
);

CREATE UNIQUE INDEX encryption_keys_one_active ON encryption_keys (issuer_id) WHERE retired_at IS NULL;
