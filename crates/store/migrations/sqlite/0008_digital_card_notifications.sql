-- Notifications about one digital card (outbound.md §4b) sit in the same outbox as the card's, so
-- that they keep the card's order; they are sent one per call to the digital-card endpoint.
ALTER TABLE operations ADD COLUMN digital_card_id TEXT;
