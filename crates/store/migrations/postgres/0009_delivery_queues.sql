-- The delivery queue: one row per card that has notifications still to send, saying when the
-- oldest of them (the card's head) can go: its next try, or the end of the lease a worker holds on
-- it, whichever is later. Notifications of one card go out in order, so a card whose head is out
-- with a worker or waits for a retry has nothing to send. The worker looks here, not in the outbox:
-- such a card is skipped in one step however many notifications queue behind its head (walking the
-- outbox row by row cost 225 ms per look at 100,000 notifications on 64 cards, docs/PERFORMANCE.md).
-- head_seq breaks ties between cards ready at the same time: the older head goes first.
CREATE TABLE delivery_queues (
    issuer_id  TEXT   NOT NULL,
    card_id    TEXT   NOT NULL,
    ready_at   BIGINT NOT NULL,
    head_seq   BIGINT NOT NULL,
    PRIMARY KEY (issuer_id, card_id)
);

-- The claim (one issuer's ready cards) and the look across issuers (the card ready longest).
CREATE INDEX delivery_queues_ready ON delivery_queues (issuer_id, ready_at, head_seq) INCLUDE (card_id);
CREATE INDEX delivery_queues_ready_anywhere ON delivery_queues (ready_at, head_seq) INCLUDE (issuer_id);

INSERT INTO delivery_queues (issuer_id, card_id, ready_at, head_seq)
SELECT DISTINCT ON (issuer_id, card_id) issuer_id, card_id,
       GREATEST(COALESCE(next_attempt_at, created_at), COALESCE(lease_until, next_attempt_at, created_at)),
       seq
FROM operations
WHERE delivery_state = 'PENDING'
ORDER BY issuer_id, card_id, seq;

-- The outbox in due order was only walked to find work; the queue answers that now.
DROP INDEX operations_pending;
