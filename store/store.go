// Package store keeps contracts, their history and WeChat's notification
// inbox in Postgres through pgx.
//
// The store runs transactions; the domain decides. Every state change goes
// through Tx.Apply, which locks the contract's row, lets domain.Contract.Apply
// rule on the event, and writes the new state and exactly one history row in
// the same transaction (or nothing at all for a repeat). Postgres errors are
// mapped to domain errors in one place, mapErr, so callers only ever see
// domain codes: CONTRACT_NOT_EXIST, CONTRACT_EXISTED, IN_PROGRESS (a row
// locked past the lock timeout), UNAVAILABLE.
//
// Every transaction and every statement is bounded (Options): a lock wait
// by lock_timeout, a statement by statement_timeout, both set with SET
// LOCAL in the message that begins the transaction, or with set_config in
// the batch of a read sent without one, or by a context deadline for a
// single read; never on the session, which pgbouncer in transaction mode
// does not carry. Readers of many rows share at most Options.HeavyReaders
// connections, and callers of one contract queue in the process rather than
// on connections, so single-contract work always finds a connection.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store is contractd's Postgres persistence.
type Store struct {
	pool *pgxpool.Pool
	opt  Options
	// begin opens a transaction with the full bounds; lockMS and
	// statementMS are the bounds as sendBounded passes them.
	begin, lockMS, statementMS string
	// heavy holds a token per connection a reader of many rows holds.
	heavy chan struct{}
	rows  rowGate
}

// New wraps an open pool, with the default Options.
func New(pool *pgxpool.Pool) *Store {
	return NewWithOptions(pool, Options{})
}

// NewWithOptions wraps an open pool, bounded by o (see Options).
func NewWithOptions(pool *pgxpool.Pool, o Options) *Store {
	o = o.withDefaults(pool.Config().MaxConns)
	return &Store{pool: pool, opt: o, begin: beginSQL(o.LockTimeout, o.StatementTimeout),
		lockMS: millis(o.LockTimeout), statementMS: millis(o.StatementTimeout), heavy: make(chan struct{}, o.HeavyReaders)}
}

// Connect opens a pool of at most maxConns connections (pgx's default when
// zero) on url and checks that the database answers within ctx. The error
// names the cause without the connection string's secrets.
//
// Queries use pgx's QueryExecModeCacheDescribe: each is sent as an unnamed
// prepared statement, parsed, bound and executed in one round trip once its
// parameter and result types are cached on the connection. Unlike pgx's
// default (named prepared statements, cached per server session) it works
// behind pgbouncer in transaction mode, where consecutive transactions of
// one client connection may run on different server sessions.
func Connect(ctx context.Context, url string, maxConns int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL is not a valid Postgres connection string: %w", errors.New(redact(err)))
	}
	if maxConns > 0 {
		cfg.MaxConns = int32(maxConns)
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	cfg.AfterConnect = scanTimesInUTC
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres at %s:%d is unreachable: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return pool, nil
}

// scanTimesInUTC makes a connection return every timestamptz in UTC rather
// than the host's zone, so that answers read the same on every host.
func scanTimesInUTC(_ context.Context, conn *pgx.Conn) error {
	conn.TypeMap().RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID,
		Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC}})
	return nil
}

// redact keeps pgx's parse error message but never the string that failed.
func redact(err error) string {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return pe.Unwrap().Error()
	}
	return "cannot parse"
}

// Pool returns the underlying pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return mapErr(s.pool.Ping(ctx))
}

// Tx is one database transaction of the store.
type Tx struct {
	tx pgx.Tx
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
// (then UNAVAILABLE); see beginSQL.
func (s *Store) InTx(ctx context.Context, fn func(tx *Tx) error) error {
	return s.inTx(ctx, nil, fn)
}

// inTx is InTx for a transaction that locks the contract with key (when
// not nil): it first takes the key's turn in this process (rowGate), until
// it holds the row lock (Tx.locked) or ends, and what that wait took comes
// off the transaction's lock timeout, so a caller waits at most the lock
// timeout in all.
func (s *Store) inTx(ctx context.Context, key *domain.Key, fn func(tx *Tx) error) error {
	begin := s.begin
	t := &Tx{}
	if key != nil {
		leave, left, err := s.rows.enter(ctx, *key, s.opt.LockTimeout)
		if err != nil {
			return err
		}
		t.leave = leave
		defer t.locked()
		if left < s.opt.LockTimeout {
			begin = beginSQL(left, s.opt.StatementTimeout)
		}
	}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{BeginQuery: begin}, func(tx pgx.Tx) error {
		t.tx = tx
		return fn(t)
	})
	return mapErr(err)
}

// mapErr turns Postgres and pgx errors into domain errors: the one place
// where they are mapped. Domain errors pass through unchanged.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var de *domain.Error
	if errors.As(err, &de) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return &domain.Error{Code: domain.CodeNotFound, Message: "no such contract", Err: err}
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch {
		case pg.Code == "23505":
			return &domain.Error{Code: domain.CodeExists, Message: "the contract already exists", Err: err}
		case pg.Code == "55P03": // lock_not_available: past lock_timeout
			return lockTimeoutError(domain.Key{}, err)
		case pg.Code == "57014": // query_canceled: past statement_timeout, or cancelled
			return &domain.Error{Code: domain.CodeUnavailable, Message: "the database did not answer in time", Err: err}
		case len(pg.Code) >= 2 && (pg.Code[:2] == "08" || pg.Code[:2] == "57" || pg.Code[:2] == "53"):
			return &domain.Error{Code: domain.CodeUnavailable, Message: "the database is unavailable", Err: err}
		}
		return fmt.Errorf("postgres: %w", err)
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) {
		return &domain.Error{Code: domain.CodeUnavailable, Message: "the database is unavailable", Err: err}
	}
	return fmt.Errorf("postgres: %w", err)
}
