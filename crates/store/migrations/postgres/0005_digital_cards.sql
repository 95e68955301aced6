-- Digital cards (wallet tokens) as D1 keeps them per card.
CREATE TABLE digital_cards (
    issuer_id        TEXT    NOT NULL,
    digital_card_id  TEXT    NOT NULL,
    card_id          TEXT    NOT NULL,
    wallet           TEXT    NOT NULL,
    device           TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    PRIMARY KEY (issuer_id, digital_card_id)
);

CREATE INDEX digital_cards_by_card ON digital_cards (issuer_id, card_id);
