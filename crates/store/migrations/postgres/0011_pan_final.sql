-- Whether a card's PAN is live changes once, when the card ends (deleted or replaced); its state
-- changes with every suspend and resume. The PAN indexes (0004, 0010) were partial on the state, so
-- no state change could be a HOT update: each put a new entry in every index of the table. They are
-- partial on pan_final now, which only the end of a card sets; the check keeps it equal to "the
-- state is DELETED or REPLACED".
ALTER TABLE cards ADD COLUMN pan_final BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE cards SET pan_final = TRUE WHERE state IN ('DELETED', 'REPLACED');
ALTER TABLE cards ADD CONSTRAINT cards_pan_final_follows_state
    CHECK (pan_final = (state IN ('DELETED', 'REPLACED')));
DROP INDEX cards_live_pan;
CREATE UNIQUE INDEX cards_live_pan ON cards (issuer_id, pan_fingerprint) WHERE NOT pan_final;
DROP INDEX cards_final_by_pan;
CREATE INDEX cards_final_by_pan ON cards (issuer_id, pan_fingerprint) WHERE pan_final;
