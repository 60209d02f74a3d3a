package pgbouncer_test

import (
	"strings"
	"testing"

	"github.com/contractd/contractd/internal/pgbouncer"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// TestPoolsInTransactionModeForItsOwnDatabase starts a pgbouncer, reaches
// a database of the test's own through it with cache_describe, and checks
// that the pool is in transaction mode: two transactions of one client
// connection may run on different server sessions, which SHOW POOLS on
// the admin console cannot tell, but pgbouncer's own SHOW CONFIG can.
func TestPoolsInTransactionModeForItsOwnDatabase(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDatabase(t)
	b := pgbouncer.Start(t, pgbouncer.Options{Upstream: pgtest.URL()})
	ctx := t.Context()
	c, err := pgx.Connect(ctx, b.URL(db.Database)+"&default_query_exec_mode=cache_describe")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var name string
	if err := c.QueryRow(ctx, "SELECT current_database() WHERE $1::int = 1", 1).Scan(&name); err != nil {
		t.Fatal(err)
	}
	if name != db.Database {
		t.Fatalf("through pgbouncer: database %q, want %q", name, db.Database)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM contracts").Scan(&n); err != nil {
		t.Fatalf("the database is not migrated: %v", err)
	}
	admin, err := pgx.Connect(ctx, b.URL("pgbouncer")+"&default_query_exec_mode=simple_protocol")
	if err != nil {
		t.Fatalf("admin console: %v", err)
	}
	defer admin.Close(ctx)
	rows, err := admin.Query(ctx, "SHOW CONFIG")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	mode := ""
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		if vals[0] == "pool_mode" {
			mode = vals[1].(string)
		}
	}
	if strings.TrimSpace(mode) != "transaction" {
		t.Fatalf("pool_mode %q, want transaction", mode)
	}
}
