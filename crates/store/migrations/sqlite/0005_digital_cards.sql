-- Digital cards (wallet tokens) as D1 keeps them per card.
CREATE TABLE IF NOT EXISTS digital_cards (
    issuer_id        TEXT    NOT NULL,
    digital_card_id  TEXT    NOT NULL,
    card_id          TEXT    NOT NULL,
    wallet           TEXT    NOT NULL,
    device           TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (issuer_id, digital_card_id)
) STRICT;

CREATE INDEX IF NOT EXISTS digital_cards_by_card ON digital_cards (issuer_id, card_id);
