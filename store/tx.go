package store

import (
	"context"
	"time"

	"github.com/contractd/contractd/domain"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Tx is one database transaction of the store.
//
// Its BEGIN travels in the same round trip as its first statement, and its
// COMMIT, where the store knows which batch of writes is the transaction's
// last (commitWith), in the same round trip as that batch: the notification
// that locks a contract and writes what the domain decided is two round
// trips, not four. A transaction that sent nothing sends no BEGIN and no
// COMMIT.
type Tx struct {
	conn interface {
		Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
		SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	}
	begun     bool // BEGIN was sent
	committed bool // COMMIT was sent with a batch and succeeded
	// commitLast says that the next batch of writes persist or create
	// sends is the transaction's last: COMMIT goes with it.
	commitLast bool
	// lockMS and statementMS are the transaction's bounds, set with its
	// BEGIN (see beginWith).
	lockMS, statementMS string
	// leave, when set, gives up the contract's turn in this process
	// (rowGate); see locked.
	leave func()
}

// locked tells that the transaction holds the contract's row lock (or
// failed to take it): the next caller of the contract in this process may
// begin its transaction now and wait on the row lock itself, so only the
// wait for the lock is serialised here, not the whole transaction.
func (tx *Tx) locked() {
	if tx.leave != nil {
		tx.leave()
		tx.leave = nil
	}
}

// InTx runs fn in one transaction, committing when fn returns nil and
// rolling back otherwise: an error anywhere leaves the database as it was.
// The transaction waits at most the lock timeout for a lock (then the
// error is IN_PROGRESS) and runs no statement past the statement timeout
// (then UNAVAILABLE); see beginWith.
func (s *Store) InTx(ctx context.Context, fn func(tx *Tx) error) error {
	return s.inTx(ctx, nil, fn)
}

// inTx is InTx for a transaction that locks the contract with key (when
// not nil): it first takes the key's turn in this process (rowGate), until
// it holds the row lock (Tx.locked) or ends, and what that wait took comes
// off the transaction's lock timeout, so a caller waits at most the lock
// timeout in all.
func (s *Store) inTx(ctx context.Context, key *domain.Key, fn func(tx *Tx) error) (err error) {
	lockMS := s.lockMS
	var leave func()
	if key != nil {
		var left time.Duration
		leave, left, err = s.rows.enter(ctx, *key, s.opt.LockTimeout)
		if err != nil {
			return err
		}
		if left > 0 && left < s.opt.LockTimeout {
			lockMS = millis(left)
		}
	}
	// The turn is given up once: by Tx.locked when the row is held, or
	// when the transaction ends, whichever comes first.
	tx := &Tx{lockMS: lockMS, statementMS: s.statementMS, leave: leave}
	defer tx.locked()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return mapErr(err)
	}
	tx.conn = conn
	defer func() {
		// An error, a panic, or a COMMIT that never ran: roll back. A
		// connection still in a transaction after that is destroyed by
		// the pool on release, never reused.
		if tx.begun && !tx.committed && conn.Conn().PgConn().TxStatus() != 'I' && !conn.Conn().IsClosed() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, _ = conn.Exec(rctx, "ROLLBACK")
			cancel()
		}
		conn.Release()
	}()
	if err := fn(tx); err != nil {
		return mapErr(err)
	}
	if !tx.begun || tx.committed {
		return nil
	}
	tag, err := conn.Exec(ctx, "COMMIT")
	if err != nil {
		return mapErr(err)
	}
	if tag.String() != "COMMIT" {
		return mapErr(pgx.ErrTxCommitRollback)
	}
	tx.committed = true
	return nil
}

// beginWith returns b with BEGIN and the transaction's bounds in front when
// the transaction has not begun. The bounds (boundSQL: set_config with
// is_local) last as long as the transaction and leave nothing on the
// session, which pgbouncer in transaction mode needs (it refuses them as
// start-up parameters, and a session SET would leak to the server
// connection's next client); they ride in BEGIN's round trip. Migrations
// run through goose, not here, and so are not bounded.
func (tx *Tx) beginWith(b *pgx.Batch) *pgx.Batch {
	if tx.committed {
		panic("store: a statement after the transaction's COMMIT (commitLast set too early)")
	}
	if tx.begun {
		return b
	}
	tx.begun = true
	return &pgx.Batch{QueuedQueries: append([]*pgx.QueuedQuery{{SQL: "BEGIN"},
		{SQL: boundSQL, Arguments: []any{tx.lockMS, tx.statementMS}}}, b.QueuedQueries...)}
}

// SendBatch sends b in the transaction (with its BEGIN and bounds when it
// is the first thing sent). The caller reads b's results and closes them.
func (tx *Tx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if tx.begun && !tx.committed {
		return tx.conn.SendBatch(ctx, b)
	}
	br := tx.conn.SendBatch(ctx, tx.beginWith(b))
	// BEGIN's and the bounds' results; were one an error, every later
	// result repeats it.
	_, _ = br.Exec()
	_, _ = br.Exec()
	return br
}

// Exec runs one statement in the transaction.
func (tx *Tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if tx.begun && !tx.committed {
		return tx.conn.Exec(ctx, sql, args...)
	}
	var b pgx.Batch
	b.Queue(sql, args...)
	br := tx.SendBatch(ctx, &b)
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// Query runs one query in the transaction. The rows must be closed before
// the transaction sends anything else.
func (tx *Tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if tx.begun && !tx.committed {
		return tx.conn.Query(ctx, sql, args...)
	}
	var b pgx.Batch
	b.Queue(sql, args...)
	br := tx.SendBatch(ctx, &b)
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, err
	}
	return &batchRows{Rows: rows, br: br}, nil
}

// commitWith sends b with COMMIT after it, as the transaction's last
// round trip, and hands the results to read (which reads b's own, in queue
// order) before reading COMMIT's. When anything in b fails, Postgres skips
// the COMMIT and InTx rolls back.
func (tx *Tx) commitWith(ctx context.Context, b *pgx.Batch, read func(br pgx.BatchResults) error) error {
	b.Queue("COMMIT")
	br := tx.SendBatch(ctx, b)
	err := read(br)
	if err == nil {
		var tag pgconn.CommandTag
		if tag, err = br.Exec(); err == nil && tag.String() != "COMMIT" {
			err = pgx.ErrTxCommitRollback
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		tx.committed = true
	}
	return mapErr(err)
}

// sendWrites sends b, the writes of persist or create, and reads its
// results with read: with COMMIT after them when commitLast is set.
func (tx *Tx) sendWrites(ctx context.Context, b *pgx.Batch, read func(br pgx.BatchResults) error) error {
	if tx.commitLast {
		return tx.commitWith(ctx, b, read)
	}
	br := tx.SendBatch(ctx, b)
	err := read(br)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return mapErr(err)
}

// batchRows are a query's rows read from a batch, which they close with
// themselves.
type batchRows struct {
	pgx.Rows
	br     pgx.BatchResults
	closed bool
	err    error
}

func (r *batchRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.Rows.Close()
	r.err = r.br.Close()
}

func (r *batchRows) Err() error {
	if err := r.Rows.Err(); err != nil {
		return err
	}
	return r.err
}
