package migrations_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/migrations"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// latest is the version of the newest migration file in this directory
// (the files the binary embeds).
func latest(t *testing.T) int64 {
	t.Helper()
	files, err := filepath.Glob("*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migration files: %v %v", files, err)
	}
	var v int64
	for _, f := range files {
		num, _, _ := strings.Cut(f, "_")
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			t.Fatalf("migration file %s: %v", f, err)
		}
		v = max(v, n)
	}
	return v
}

func tables(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_name IN ('contracts', 'contract_events', 'wechat_notifications')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Any number of processes may migrate one schema at the same moment: every
// one succeeds and each migration is applied once.
func TestConcurrentUpAppliesEachMigrationOnce(t *testing.T) {
	t.Parallel()
	s := pgtest.NewUnmigrated(t)
	db := stdlib.OpenDBFromPool(s.Pool)
	defer db.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if err := migrations.Up(ctx, db); err != nil {
				t.Errorf("Up: %v", err)
			}
		})
	}
	wg.Wait()
	want := latest(t)
	var applied, version int64
	if err := db.QueryRowContext(ctx, `SELECT count(*), max(version_id) FROM goose_db_version WHERE version_id > 0`).Scan(&applied, &version); err != nil {
		t.Fatal(err)
	}
	if applied != want || version != want {
		t.Fatalf("%d migrations applied, version %d; want each of %d once", applied, version, want)
	}
	if n := tables(t, db); n != 3 {
		t.Fatalf("%d of the 3 main tables exist", n)
	}
}

// Every migration has a working down: down to zero leaves none of our
// tables, and up again rebuilds them.
func TestDownToZeroAndUpAgain(t *testing.T) {
	t.Parallel()
	s := pgtest.New(t)
	db := stdlib.OpenDBFromPool(s.Pool)
	defer db.Close()
	ctx := context.Background()
	p, err := migrations.NewProvider(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 0); err != nil {
		t.Fatalf("down to 0: %v", err)
	}
	if v, err := p.GetDBVersion(ctx); err != nil || v != 0 {
		t.Fatalf("version after down: %d %v", v, err)
	}
	if n := tables(t, db); n != 0 {
		t.Fatalf("%d main tables left after down", n)
	}
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("up again: %v", err)
	}
	if v, err := p.GetDBVersion(ctx); err != nil || v != latest(t) {
		t.Fatalf("version after up: %d %v, want %d", v, err, latest(t))
	}
	if n := tables(t, db); n != 3 {
		t.Fatalf("%d of the 3 main tables after up again", n)
	}
}

// migratedTo is a fresh schema migrated up to version, the provider that
// moves it further, and exec, which runs a statement in it or fails t.
func migratedTo(t *testing.T, version int64) (*pgtest.Schema, *goose.Provider, func(sql string, args ...any)) {
	t.Helper()
	ctx := context.Background()
	s := pgtest.NewUnmigrated(t)
	db := stdlib.OpenDBFromPool(s.Pool)
	t.Cleanup(func() { _ = db.Close() })
	p, err := migrations.NewProvider(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, version); err != nil {
		t.Fatalf("up to %d: %v", version, err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := s.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	return s, p, exec
}
