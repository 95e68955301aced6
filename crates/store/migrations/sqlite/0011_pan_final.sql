-- Whether a card's PAN is live changes once, when the card ends (deleted or replaced); its state
-- changes with every suspend and resume. The PAN indexes (0004, 0010) were partial on the state, so
-- each state change took the card out of cards_live_pan and put it back: a random page of that
-- index in the write-ahead log per life-cycle operation. They are partial on pan_final now, which
-- only the end of a card sets (and which the store keeps equal to "the state is DELETED or REPLACED").
ALTER TABLE cards ADD COLUMN pan_final INTEGER NOT NULL DEFAULT 0;
UPDATE cards SET pan_final = TRUE WHERE state IN ('DELETED', 'REPLACED');
DROP INDEX cards_live_pan;
CREATE UNIQUE INDEX cards_live_pan ON cards (issuer_id, pan_fingerprint) WHERE NOT pan_final;
DROP INDEX cards_final_by_pan;
CREATE INDEX cards_final_by_pan ON cards (issuer_id, pan_fingerprint) WHERE pan_final;
