package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrLockTimeout is in the chain of the IN_PROGRESS error a store call
// answers when a contract's row stayed locked past the lock timeout: the
// flows that must not lose what WeChat said (saving an outcome) retry on it.
var ErrLockTimeout = errors.New("store: the contract's row stayed locked past the lock timeout")

// lockRetryAfter is the Retry-After of a lock timeout: a row is locked for
// milliseconds unless something holds it far longer, so ask again soon.
const lockRetryAfter = time.Second

// ErrBusy is in the chain of the UNAVAILABLE error of a reader of many rows
// that found no place among the HeavyReaders within the statement timeout.
var ErrBusy = errors.New("store: every place for heavy readers stayed taken")

// busyRetryAfter is the Retry-After of a heavy reader shed for load.
const busyRetryAfter = time.Second

// Options bound what the store may take of the database. A zero bound is
// no bound, as it is to Postgres: the service's bounds are settings whose
// defaults config owns (CONTRACTD_DB_LOCK_TIMEOUT,
// CONTRACTD_DB_STATEMENT_TIMEOUT), and the store only applies what it is
// given.
type Options struct {
	// LockTimeout bounds how long a transaction waits for a row lock
	// (lock_timeout), this process's turn at the row included: past it the
	// call answers IN_PROGRESS with a Retry-After. Zero waits for as long
	// as the caller's context lasts.
	LockTimeout time.Duration
	// StatementTimeout bounds one statement (statement_timeout, or a
	// context deadline for single reads) and a heavy reader's wait for its
	// place: past it the call answers UNAVAILABLE and its transaction is
	// rolled back. Zero leaves statements to the caller's context.
	StatementTimeout time.Duration
	// HeavyReaders is how many connections the readers of many rows (List,
	// Feed, FeedTail, Search, Overview: the API's lists and feed, the
	// console's lists, CSV export, overview and search) may hold at once.
	// Half the pool (at least 1) when zero, so that single-contract work
	// always finds a connection. A heavy reader waits for a place at most
	// the statement timeout, then answers UNAVAILABLE with a Retry-After.
	HeavyReaders int
	// KeyReadsInFlight is how many queries reading contracts by key (Get)
	// this process sends at once before further reads queue and go
	// together in one query (see keyReads). Two when zero: reads that
	// arrive while two such queries are out go together in the next, at a
	// fraction of a query each, and one slow query (a page to read from
	// disk, a dirty buffer to write first) holds up only the reads in it
	// and those queued behind (BENCHMARKS.md, issue 19).
	KeyReadsInFlight int
	// ReadPool, when set, is the pool Reads runs on (a standby's): every
	// connection of it is a place for Reads' heavy readers, bounded by the
	// same lock and statement timeouts. Reads runs on the primary's pool,
	// among its HeavyReaders, when nil.
	ReadPool *pgxpool.Pool
}

// forPool sizes the heavy readers' share for a pool of maxConns when o
// leaves it zero.
func (o Options) forPool(maxConns int32) Options {
	if o.HeavyReaders <= 0 {
		o.HeavyReaders = max(1, int(maxConns)/2)
	}
	if o.KeyReadsInFlight <= 0 {
		o.KeyReadsInFlight = 2
	}
	return o
}

// millis is the bound d as Postgres reads it: a bare number of
// milliseconds, "0" (no limit) for no bound, and at least 1 for any bound,
// so that a bound shorter than a millisecond is not taken for none.
func millis(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return strconv.FormatInt(max(1, (d+time.Millisecond-1).Milliseconds()), 10)
}

// after is a channel that delivers once d has passed, and nil (which never
// delivers) when d is no bound; stop releases its timer.
func after(d time.Duration) (c <-chan time.Time, stop func()) {
	if d <= 0 {
		return nil, func() {}
	}
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// boundSQL sets both bounds for the rest of an implicit transaction: the
// first statement of a batch sent outside a transaction, in the same round
// trip (the batch's statements share one implicit transaction, ended by its
// one Sync). Postgres restarts the statement timer at each statement of a
// batch, so each one gets the whole bound.
const boundSQL = `SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $2, true)`

// heavyRead sends the batch of a reader of many rows: it waits for one of
// the HeavyReaders places, then sends b after the statement that bounds it,
// in one round trip. The wait ends with the caller (ctx) or after the
// statement timeout: a flood of list pages is then shed as UNAVAILABLE with
// a Retry-After rather than queued past every client's patience and the
// server's write timeout.
func (s *handle) heavyRead(ctx context.Context, b *pgx.Batch) error {
	select {
	case s.heavy <- struct{}{}:
	default:
		expired, stop := after(s.opt.StatementTimeout)
		defer stop()
		select {
		case s.heavy <- struct{}{}:
		case <-expired:
			return &domain.Error{Code: domain.CodeUnavailable, Message: "the database is busy with other readers; ask again",
				RetryAfter: busyRetryAfter, Err: ErrBusy}
		case <-ctx.Done():
			return &domain.Error{Code: domain.CodeUnavailable, Message: "the caller went away while waiting for the database", Err: ctx.Err()}
		}
	}
	defer func() { <-s.heavy }()
	return s.sendBounded(ctx, b)
}

// sendBounded sends b outside any transaction, bounded like a transaction
// of the store. A deadline of the statement timeout and a second more
// backs the server's bounds up: before a statement first runs on a
// connection pgx asks Postgres to describe it, in a message of its own that
// the batch's bounds do not yet cover (and that waits, for one, behind a
// migration's lock on the table).
func (s *handle) sendBounded(ctx context.Context, b *pgx.Batch) error {
	if s.opt.StatementTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opt.StatementTimeout+time.Second)
		defer cancel()
	}
	full := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(b.QueuedQueries)+1)}
	full.Queue(boundSQL, s.lockMS, s.statementMS)
	full.QueuedQueries = append(full.QueuedQueries, b.QueuedQueries...)
	return mapErr(s.pool.SendBatch(ctx, full).Close())
}

// bounded is ctx with the statement timeout as its deadline, for a single
// read sent without a transaction (a contract by its key, its history):
// the one bound such a read needs (it waits for no row lock), at the cost
// of a timer rather than another statement on the server. Without a
// statement timeout it is ctx.
func (s *handle) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.opt.StatementTimeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.opt.StatementTimeout)
}

// rowGate lets at most one transaction of this process at a time wait for
// one contract's row lock. The others wait here, holding no connection,
// within the same lock timeout: so callers piling onto one locked contract
// (40 syncs of it) take one connection of the pool, not all of them, and
// every other contract's work still finds one. A transaction gives its turn
// up as soon as it holds the row (Tx.locked): the next one then begins and
// waits on the row itself, so contention between this process's own
// callers is no more serialised than Postgres serialises it.
type rowGate struct {
	mu   sync.Mutex
	keys map[domain.Key]*gateEntry
}

type gateEntry struct {
	turn chan struct{} // holds one token while a transaction of the key runs
	refs int
}

// enter waits for key's turn for at most timeout (zero: for as long as ctx
// lasts). It returns how much of timeout is left for waiting on the row
// lock itself (zero when there is no bound), and leave, which gives the
// turn to the next caller.
func (g *rowGate) enter(ctx context.Context, key domain.Key, timeout time.Duration) (leave func(), left time.Duration, err error) {
	g.mu.Lock()
	if g.keys == nil {
		g.keys = map[domain.Key]*gateEntry{}
	}
	e := g.keys[key]
	if e == nil {
		e = &gateEntry{turn: make(chan struct{}, 1)}
		g.keys[key] = e
	}
	e.refs++
	g.mu.Unlock()
	drop := func() {
		g.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(g.keys, key)
		}
		g.mu.Unlock()
	}
	select {
	case e.turn <- struct{}{}:
		return func() { <-e.turn; drop() }, timeout, nil
	default:
	}
	start := time.Now()
	expired, stop := after(timeout)
	defer stop()
	select {
	case e.turn <- struct{}{}:
	case <-expired:
		drop()
		return nil, 0, lockTimeoutError(key, nil)
	case <-ctx.Done():
		drop()
		return nil, 0, &domain.Error{Code: domain.CodeUnavailable, Message: "the caller went away while waiting for the contract's row", Err: ctx.Err()}
	}
	if timeout <= 0 {
		return func() { <-e.turn; drop() }, 0, nil
	}
	left = timeout - time.Since(start)
	if left < time.Millisecond {
		<-e.turn
		drop()
		return nil, 0, lockTimeoutError(key, nil)
	}
	return func() { <-e.turn; drop() }, left, nil
}

// lockTimeoutError is the IN_PROGRESS answer to a row that stayed locked.
func lockTimeoutError(key domain.Key, cause error) error {
	err := ErrLockTimeout
	if cause != nil {
		err = fmt.Errorf("%w: %w", ErrLockTimeout, cause)
	}
	msg := "another transaction holds the contract's row; ask again"
	if key != (domain.Key{}) {
		msg = "another transaction holds contract " + key.String() + "; ask again"
	}
	return &domain.Error{Code: domain.CodeInProgress, Message: msg, RetryAfter: lockRetryAfter, Err: err}
}
