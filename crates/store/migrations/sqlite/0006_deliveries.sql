-- The delivery record of each notification in the outbox (outbound.md §2): attempts, the next try,
-- the last error, and the lease a worker holds while it delivers. delivery_state is PENDING,
-- DELIVERED or DEAD (dead-lettered: kept, shown by the admin API, redeliverable).

ALTER TABLE operations ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE operations ADD COLUMN next_attempt_at INTEGER;
ALTER TABLE operations ADD COLUMN last_attempt_at INTEGER;
ALTER TABLE operations ADD COLUMN last_error TEXT;
ALTER TABLE operations ADD COLUMN lease_owner TEXT;
ALTER TABLE operations ADD COLUMN lease_until INTEGER;
ALTER TABLE operations ADD COLUMN delivered_at INTEGER;

UPDATE operations SET next_attempt_at = created_at WHERE delivery_state = 'PENDING';

-- The worker's two questions: what is due (oldest first), and is an earlier notification of the
-- same card still on its way (per-card order).
CREATE INDEX operations_pending ON operations (seq) WHERE delivery_state = 'PENDING';
CREATE INDEX operations_pending_by_card ON operations (issuer_id, card_id, seq) WHERE delivery_state = 'PENDING';
