// Package store keeps contracts, their history and WeChat's notification
// inbox in Postgres through pgx.
//
// The store runs transactions; the domain decides. Every change to a stored
// contract goes through one door: Update (and its variants UpdateAsLeaseHolder,
// UpdateOrCreate, UpdateDueSessions, ClaimReconcileDue, ClaimHealDue,
// ObserveTimeline, ReceiveNotification)
// locks the contract's row, hands it to a domain function
// (domain.Contract.Apply, a lease or session step, ScheduleCheck,
// MarkForHealing, ClaimHealing), and
// persists what it decided in the same transaction: the columns that
// changed and one history row per decision that calls for one (none for a
// repeat). Each returns what it persisted (Persisted: the contract as
// stored, the decisions, the history rows; Received adds the inbox outcome). Postgres errors are
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
//
// Reads (Store.Reads) is the one read-only view that may run on a standby
// (Options.ReadPool): the console's overview, contract lists and CSV
// export, which may be as old as its replication lag. Every other method
// runs on the primary.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store is contractd's Postgres persistence. Its methods run on the
// primary; Reads is the view that may run on a standby.
type Store struct {
	handle
	rows  rowGate
	reads *Reads
	byKey keyReads
}

// handle is a pool with the store's bounds: the primary's, or the read
// pool's of Reads.
type handle struct {
	pool *pgxpool.Pool
	opt  Options
	// lockMS and statementMS are the bounds as transactions and
	// sendBounded pass them to Postgres.
	lockMS, statementMS string
	// heavy holds a token per connection a reader of many rows holds.
	heavy chan struct{}
}

// Reads is the store's read-only view for reports that may be as old as a
// standby's replication lag: the console's overview (Overview), its
// contract lists and the CSV export (List). It runs on Options.ReadPool
// (CONTRACTD_DB_READ_URL), or on the primary's pool when none is given.
// Nothing that decides, writes, or answers about one contract reads
// through it: the API, the feeds, a contract's page, notifications,
// terminate and sync read the primary.
type Reads struct {
	handle
	// standby is true when the view has a pool of its own.
	standby bool
}

// New wraps an open pool with no bounds but the caller's context: what
// tests that bound nothing use. The service uses NewWithOptions with the
// bounds of its configuration.
func New(pool *pgxpool.Pool) *Store {
	return NewWithOptions(pool, Options{})
}

// NewWithOptions wraps an open pool, bounded by o (see Options).
func NewWithOptions(pool *pgxpool.Pool, o Options) *Store {
	readPool := o.ReadPool
	o.ReadPool = nil
	o = o.forPool(pool.Config().MaxConns)
	s := &Store{handle: handle{pool: pool, opt: o, lockMS: millis(o.LockTimeout), statementMS: millis(o.StatementTimeout),
		heavy: make(chan struct{}, o.HeavyReaders)}, byKey: keyReads{limit: o.KeyReadsInFlight}}
	if readPool == nil || readPool == pool {
		// One pool, one gate: the reports count among the primary's
		// heavy readers.
		s.reads = &Reads{handle: s.handle}
		return s
	}
	// The read pool serves nothing but the reports: every connection of
	// it is a place for them.
	r := s.handle
	r.pool = readPool
	r.opt.HeavyReaders = int(readPool.Config().MaxConns)
	r.heavy = make(chan struct{}, r.opt.HeavyReaders)
	s.reads = &Reads{handle: r, standby: true}
	return s
}

// Reads returns the store's read-only view (see Reads).
func (s *Store) Reads() *Reads { return s.reads }

// Pool returns the view's pool: the read pool, or the primary's.
func (r *Reads) Pool() *pgxpool.Pool { return r.pool }

// Separate reports whether the view has a pool of its own (a standby)
// rather than the primary's.
func (r *Reads) Separate() bool { return r.standby }

// Connect opens a pool of at most maxConns connections (pgx's default when
// zero) on url and checks that the database answers within ctx. The error
// names the cause without the connection string's secrets.
//
// The query exec mode is the operator's: url's default_query_exec_mode
// (pgx parses it), pgx's cache_statement when url does not name one.
// cache_statement prepares each query once per server session as a named
// statement, so Postgres parses and plans it once; it needs a direct
// connection or a pooler that carries named prepared statements in
// transaction mode (pgbouncer 1.21 and later with max_prepared_statements
// > 0). Older poolers need default_query_exec_mode=cache_describe: each
// query is sent as an unnamed statement, parsed and planned on every
// execution, in one round trip once its types are cached. ExecMode names
// the mode in use.
func Connect(ctx context.Context, url string, maxConns int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("not a valid Postgres connection string: %w", errors.New(redact(err)))
	}
	if maxConns > 0 {
		cfg.MaxConns = int32(maxConns)
	}
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

// CheckURL reports whether url is a Postgres connection string Connect
// accepts; the error never holds the string.
func CheckURL(url string) error {
	if _, err := pgxpool.ParseConfig(url); err != nil {
		return errors.New(redact(err))
	}
	return nil
}

// ExecMode is the name, as DATABASE_URL's default_query_exec_mode spells
// it, of the query exec mode pool's connections use.
func ExecMode(pool *pgxpool.Pool) string {
	return strings.ReplaceAll(pool.Config().ConnConfig.DefaultQueryExecMode.String(), " ", "_")
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
		if inner := pe.Unwrap(); inner != nil {
			return inner.Error()
		}
		// pgx's message alone, after the string it quotes.
		msg := pe.Error()
		if i := strings.LastIndex(msg, "`: "); i >= 0 {
			return msg[i+len("`: "):]
		}
	}
	return "cannot parse"
}

// Pool returns the underlying pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return mapErr(s.pool.Ping(ctx))
}

// Ping checks that the view's database answers.
func (r *Reads) Ping(ctx context.Context) error {
	return mapErr(r.pool.Ping(ctx))
}

// preparedStatementHint is what the log says when a named prepared
// statement went missing or was already there: the server session changed
// under the connection, as a pooler in transaction mode that does not carry
// prepared statements does.
const preparedStatementHint = "a connection pooler in transaction mode that does not carry named prepared statements " +
	"(pgbouncer before 1.21, or max_prepared_statements = 0) is between contractd and Postgres: " +
	"set default_query_exec_mode=cache_describe in DATABASE_URL, or enable the pooler's prepared statement support"

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
		case pg.Code == "26000" || pg.Code == "42P05":
			return &domain.Error{Code: domain.CodeUnavailable, Message: "the database is unavailable", Err: fmt.Errorf("%w (%s)", err, preparedStatementHint)}
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
