-- At most one live card per PAN and issuer, enforced by the database itself, so that concurrent
-- registrations on PostgreSQL cannot both pass the check the use case makes.
CREATE UNIQUE INDEX cards_live_pan ON cards (issuer_id, pan_fingerprint)
    WHERE state NOT IN ('DELETED', 'REPLACED');
