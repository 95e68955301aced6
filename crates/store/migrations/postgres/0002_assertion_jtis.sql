-- The jti of every assertion an issuer used, until the assertion expires: a second use is a replay.
CREATE TABLE assertion_jtis (
    issuer_id   TEXT   NOT NULL,
    jti         TEXT   NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (issuer_id, jti)
);

CREATE INDEX assertion_jtis_expiry ON assertion_jtis (issuer_id, expires_at);
