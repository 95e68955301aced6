-- The jti of every assertion an issuer used, until the assertion expires: a second use is a replay.
CREATE TABLE IF NOT EXISTS assertion_jtis (
    issuer_id   TEXT    NOT NULL,
    jti         TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (issuer_id, jti)
) STRICT;

CREATE INDEX IF NOT EXISTS assertion_jtis_expiry ON assertion_jtis (issuer_id, expires_at);
