package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestWithSearchPath(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"postgres://u@h/db", "postgres://u@h/db?search_path=s1"},
		{"postgres://u@h/db?sslmode=disable", "postgres://u@h/db?sslmode=disable&search_path=s1"},
	} {
		if got := withSearchPath(tc.url, "s1"); got != tc.want {
			t.Errorf("withSearchPath(%q) = %q, want %q", tc.url, got, tc.want)
		}
	}
}

// Each test's schema is migrated, private, and what its URL connects to:
// rows written in one are not seen from another.
func TestSchemasAreMigratedAndPrivate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := New(t), New(t)
	if a.Name == b.Name {
		t.Fatalf("two schemas named %s", a.Name)
	}
	if _, err := a.Pool.Exec(ctx, `INSERT INTO contracts (product, channel, plan_id, state, out_contract_code)
		VALUES ('papay', 'app', 1, 'created', 'private-1')`); err != nil {
		t.Fatalf("the schema is not migrated: %v", err)
	}
	var n int
	if err := b.Pool.QueryRow(ctx, `SELECT count(*) FROM contracts`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the other schema sees %d contracts (%v), want 0", n, err)
	}
	conn, err := pgx.Connect(ctx, a.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var schema string
	if err := conn.QueryRow(ctx, `SELECT current_schema() || ':' || (SELECT count(*) FROM contracts)`).Scan(&schema); err != nil || schema != a.Name+":1" {
		t.Fatalf("URL connects to %q (%v), want %s:1", schema, err, a.Name)
	}
	u := NewUnmigrated(t)
	if err := u.Pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1`, u.Name).Scan(&n); err != nil || n != 0 {
		t.Fatalf("an unmigrated schema holds %d tables (%v), want 0", n, err)
	}
}
