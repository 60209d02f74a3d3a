package main

import (
	"context"
	"errors"
	"time"

	"github.com/contractd/contractd/migrations"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pressly/goose/v3"
)

// readiness answers /readyz. It asks the database on a pool of its own (one
// connection, opened again when lost), never through the pool requests
// share: when requests hold every pooled connection the database is busy,
// not unreachable, and a load balancer that pulled every replica at once
// for load would turn it into an outage. Only an unreachable database or a
// schema behind the binary's migrations is not ready.
type readiness struct {
	main   *pgxpool.Pool   // the requests' pool, whose use is reported
	own    *pgxpool.Pool   // readiness's own connection
	schema *goose.Provider // on own
}

// check is an httpapi.Readiness.
func (r *readiness) check(ctx context.Context) (string, error) {
	if err := r.own.Ping(ctx); err != nil {
		return "unreachable", errors.New("database unreachable")
	}
	pending, err := r.schema.HasPending(ctx)
	if err != nil {
		return "unreachable", errors.New("database unreachable")
	}
	if pending {
		return "schema_behind", errors.New("schema is not current: run contractd migrate up")
	}
	if st := r.main.Stat(); st.AcquiredConns() >= st.MaxConns() {
		return "busy", nil
	}
	return "ok", nil
}

// readReadiness answers /readyz's db_read: the standby the console's
// reports read (CONTRACTD_DB_READ_URL), asked on a connection of its own
// as readiness asks the primary. It only reports: a standby down or behind
// leaves the replica ready (see httpapi.ReadReadiness).
type readReadiness struct {
	own    *pgxpool.Pool   // one connection to the standby
	schema *goose.Provider // on own
}

// readCheckTimeout bounds the standby's check, so that a standby that
// stopped answering leaves the primary's check its time.
const readCheckTimeout = time.Second

// check is an httpapi.ReadReadiness.
func (r *readReadiness) check(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, readCheckTimeout)
	defer cancel()
	if err := r.own.Ping(ctx); err != nil {
		return "unreachable"
	}
	pending, err := r.schema.HasPending(ctx)
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == "42P01" { // undefined_table: never migrated
		return "schema_behind"
	}
	if err != nil {
		return "unreachable"
	}
	if pending {
		return "schema_behind"
	}
	return "ok"
}

// readinessConn opens the one connection a readiness check asks on, on the
// database variable names, and the migrations provider that reads its
// schema's version over it; closeAll closes both.
func readinessConn(ctx context.Context, variable, url string) (own *pgxpool.Pool, schema *goose.Provider, closeAll func(), err error) {
	pool, db, err := openDatabase(ctx, variable, url, 1)
	if err != nil {
		return nil, nil, nil, err
	}
	closeAll = func() { db.Close(); pool.Close() }
	if schema, err = migrations.NewProvider(ctx, db); err != nil {
		closeAll()
		return nil, nil, nil, fail(1, "%s: %v", variable, err)
	}
	return pool, schema, closeAll, nil
}
