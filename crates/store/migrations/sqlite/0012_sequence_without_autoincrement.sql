-- card_history and operations were made with `seq INTEGER PRIMARY KEY AUTOINCREMENT`. AUTOINCREMENT
-- only differs from a plain rowid key when the row with the highest key is deleted (it never hands
-- that key out again), and no row of either table is ever deleted: a new seq is one above the
-- highest either way, so the order of history lines and of notifications is unchanged. What it
-- cost: every INSERT looked its table up in sqlite_sequence and wrote the counter back, a B-tree
-- insert (and that page in the write-ahead log) on top of the row and its indexes, twice per card
-- operation (docs/PERFORMANCE.md). SQLite cannot drop AUTOINCREMENT in place, so both tables are
-- rebuilt, their rows copied with their seq, and their indexes made again.

CREATE TABLE card_history_rebuilt (
    seq             INTEGER PRIMARY KEY,
    issuer_id       TEXT    NOT NULL,
    card_id         TEXT    NOT NULL,
    operation_id    TEXT    NOT NULL,
    operation       TEXT    NOT NULL,
    from_state      TEXT,
    to_state        TEXT    NOT NULL,
    reason_code     TEXT,
    reason          TEXT,
    actor           TEXT    NOT NULL,
    correlation_id  TEXT    NOT NULL,
    at              INTEGER NOT NULL
) STRICT;

INSERT INTO card_history_rebuilt (seq, issuer_id, card_id, operation_id, operation, from_state, to_state,
                                  reason_code, reason, actor, correlation_id, at)
SELECT seq, issuer_id, card_id, operation_id, operation, from_state, to_state,
       reason_code, reason, actor, correlation_id, at
FROM card_history;

DROP TABLE card_history;
ALTER TABLE card_history_rebuilt RENAME TO card_history;
CREATE INDEX card_history_by_card ON card_history (issuer_id, card_id, seq);

CREATE TABLE operations_rebuilt (
    seq               INTEGER PRIMARY KEY,
    issuer_id         TEXT    NOT NULL,
    operation_id      TEXT    NOT NULL UNIQUE,
    card_id           TEXT    NOT NULL,
    operation         TEXT    NOT NULL,
    status            TEXT    NOT NULL,
    start_time        INTEGER NOT NULL,
    end_time          INTEGER,
    details           TEXT,                -- JSON
    delivery_state    TEXT    NOT NULL DEFAULT 'PENDING',
    created_at        INTEGER NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER,
    last_attempt_at   INTEGER,
    last_error        TEXT,
    lease_owner       TEXT,
    lease_until       INTEGER,
    delivered_at      INTEGER,
    digital_card_id   TEXT
) STRICT;

INSERT INTO operations_rebuilt (seq, issuer_id, operation_id, card_id, operation, status, start_time, end_time,
                                details, delivery_state, created_at, attempts, next_attempt_at, last_attempt_at,
                                last_error, lease_owner, lease_until, delivered_at, digital_card_id)
SELECT seq, issuer_id, operation_id, card_id, operation, status, start_time, end_time,
       details, delivery_state, created_at, attempts, next_attempt_at, last_attempt_at,
       last_error, lease_owner, lease_until, delivered_at, digital_card_id
FROM operations;

DROP TABLE operations;
ALTER TABLE operations_rebuilt RENAME TO operations;
CREATE INDEX operations_by_issuer ON operations (issuer_id, delivery_state, seq);
CREATE INDEX operations_pending_by_card ON operations (issuer_id, card_id, seq) WHERE delivery_state = 'PENDING';
