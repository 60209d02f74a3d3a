package store

import (
	"context"
	"time"

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
}

// InTx runs fn in one transaction, committing when fn returns nil and
// rolling back otherwise: an error anywhere leaves the database as it was.
func (s *Store) InTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return mapErr(err)
	}
	tx := &Tx{conn: conn}
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

// beginWith returns b with BEGIN in front when the transaction has not begun.
func (tx *Tx) beginWith(b *pgx.Batch) *pgx.Batch {
	if tx.committed {
		panic("store: a statement after the transaction's COMMIT (commitLast set too early)")
	}
	if tx.begun {
		return b
	}
	tx.begun = true
	return &pgx.Batch{QueuedQueries: append([]*pgx.QueuedQuery{{SQL: "BEGIN"}}, b.QueuedQueries...)}
}

// SendBatch sends b in the transaction (with its BEGIN when it is the
// first thing sent). The caller reads b's results and closes them.
func (tx *Tx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if tx.begun && !tx.committed {
		return tx.conn.SendBatch(ctx, b)
	}
	br := tx.conn.SendBatch(ctx, tx.beginWith(b))
	// BEGIN's result; were it an error, every later result repeats it.
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
