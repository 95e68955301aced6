-- The delivery queue: one row per card that has notifications still to send, saying when the
-- oldest of them (the card's head) can go: its next try, or the end of the lease a worker holds on
-- it, whichever is later. Notifications of one card go out in order, so a card whose head is out
-- with a worker or waits for a retry has nothing to send. The worker looks here, not in the outbox:
-- such a card is skipped in one step however many notifications queue behind its head (walking the
-- outbox row by row cost 225 ms per look at 100,000 notifications on 64 cards, docs/PERFORMANCE.md).
-- head_seq breaks ties between cards ready at the same time: the older head goes first.
CREATE TABLE delivery_queues (
    issuer_id  TEXT    NOT NULL,
    card_id    TEXT    NOT NULL,
    ready_at   INTEGER NOT NULL,
    head_seq   INTEGER NOT NULL,
    PRIMARY KEY (issuer_id, card_id)
) STRICT, WITHOUT ROWID;

-- The claim (one issuer's ready cards) and the look across issuers (the card ready longest).
CREATE INDEX delivery_queues_ready ON delivery_queues (issuer_id, ready_at, head_seq);
CREATE INDEX delivery_queues_ready_anywhere ON delivery_queues (ready_at, head_seq);

INSERT INTO delivery_queues (issuer_id, card_id, ready_at, head_seq)
SELECT o.issuer_id, o.card_id,
       MAX(COALESCE(o.next_attempt_at, o.created_at), COALESCE(o.lease_until, o.next_attempt_at, o.created_at)),
       o.seq
FROM operations o
WHERE o.delivery_state = 'PENDING'
  AND NOT EXISTS (SELECT 1 FROM operations e WHERE e.issuer_id = o.issuer_id AND e.card_id = o.card_id
                  AND e.delivery_state = 'PENDING' AND e.seq < o.seq);

-- The outbox in due order was only walked to find work; the queue answers that now.
DROP INDEX operations_pending;
