-- Cards by PAN: the live ones are found through cards_live_pan (0004), which also keeps them unique;
-- the index of every card by PAN (0003) duplicated it, and every registration paid for a random
-- page of both in the write-ahead log. Only final cards (deleted, replaced) need an index of their
-- own now, for the question whether a PAN was ever issued; a card enters it once, when it ends.
DROP INDEX IF EXISTS cards_by_pan;
CREATE INDEX IF NOT EXISTS cards_final_by_pan ON cards (issuer_id, pan_fingerprint)
    WHERE state IN ('DELETED', 'REPLACED');
