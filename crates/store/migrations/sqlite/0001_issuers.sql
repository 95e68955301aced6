-- Issuers and what they were onboarded with. Timestamps are microseconds since the Unix epoch (UTC),
-- the same in both backends so that one set of queries serves both.
-- IF NOT EXISTS: two processes starting on one new file may both run this.

CREATE TABLE IF NOT EXISTS issuers (
    issuer_id                      TEXT    NOT NULL PRIMARY KEY,
    name                           TEXT    NOT NULL,
    callback_base_url              TEXT,
    callback_token_url             TEXT,
    callback_client_id             TEXT,
    callback_client_secret_sealed  BLOB,
    callback_scope                 TEXT,
    callback_max_batch_size        INTEGER,
    callback_stores_consumer_data  INTEGER,
    wallet_server_base_url         TEXT,
    wallet_server_pods             TEXT,    -- JSON object: x-pod value -> base URL
    created_at                     INTEGER NOT NULL,
    updated_at                     INTEGER NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS assertion_keys (
    issuer_id   TEXT NOT NULL REFERENCES issuers (issuer_id),
    kid         TEXT NOT NULL,
    public_key  BLOB NOT NULL,              -- SEC1 uncompressed P-256 point
    PRIMARY KEY (issuer_id, kid)
) STRICT;

CREATE TABLE IF NOT EXISTS card_products (
    issuer_id              TEXT    NOT NULL REFERENCES issuers (issuer_id),
    card_product_id        TEXT    NOT NULL,
    scheme                 TEXT    NOT NULL,
    authorisation_mode     TEXT    NOT NULL,
    bin_from               TEXT,
    bin_to                 TEXT,
    physical               INTEGER NOT NULL,
    validity_years         INTEGER NOT NULL,
    used_for_transactions  INTEGER NOT NULL,
    PRIMARY KEY (issuer_id, card_product_id)
) STRICT;

-- cardplane-side encryption keys: the public half in clear, the private scalar sealed under the
-- master key. At most one active (not retired) key per issuer.
CREATE TABLE IF NOT EXISTS encryption_keys (
    issuer_id           TEXT    NOT NULL REFERENCES issuers (issuer_id),
    kid                 TEXT    NOT NULL,
    public_key          BLOB    NOT NULL,
    sealed_private_key  BLOB    NOT NULL,
    created_at          INTEGER NOT NULL,
    retired_at          INTEGER,
    PRIMARY KEY (issuer_id, kid)
) STRICT;

CREATE UNIQUE INDEX IF NOT EXISTS encryption_keys_one_active
    ON encryption_keys (issuer_id) WHERE retired_at IS NULL;
