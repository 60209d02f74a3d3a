package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"time"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/migrations"
	"github.com/contractd/contractd/store"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// migrateCmd runs `contractd migrate up|down|status` on
// CONTRACTD_MIGRATE_DATABASE_URL (DATABASE_URL when unset).
func migrateCmd(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) != 1 || (args[0] != "up" && args[0] != "down" && args[0] != "status") {
		return fail(2, "usage: contractd migrate up|down|status")
	}
	pool, db, err := openDatabase(ctx, migrateVariable(getenv), config.MigrateDatabaseURL(getenv), 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	defer db.Close()
	p, err := migrations.NewProvider(ctx, db)
	if err != nil {
		return fail(1, "%v", err)
	}
	switch args[0] {
	case "up":
		res, err := p.Up(ctx)
		if err != nil {
			return fail(1, "migrate up: %v", err)
		}
		if len(res) == 0 {
			fmt.Fprintln(stdout, "migrate up: already current")
		}
		for _, r := range res {
			fmt.Fprintf(stdout, "migrate up: applied %d %s (%s)\n", r.Source.Version, r.Source.Path, r.Duration.Round(time.Millisecond))
		}
	case "down":
		r, err := p.Down(ctx)
		if err != nil {
			return fail(1, "migrate down: %v", err)
		}
		fmt.Fprintf(stdout, "migrate down: rolled back %d %s\n", r.Source.Version, r.Source.Path)
	case "status":
		st, err := p.Status(ctx)
		if err != nil {
			return fail(1, "migrate status: %v", err)
		}
		for _, s := range st {
			applied := "pending"
			if !s.AppliedAt.IsZero() {
				applied = "applied " + s.AppliedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(stdout, "%d %s %s\n", s.Source.Version, s.Source.Path, applied)
		}
	}
	return nil
}

// connectPool connects to url with a pool of maxConns within 10 seconds.
// The error is one line for the user, naming variable, the setting url
// came from.
func connectPool(ctx context.Context, variable, url string, maxConns int) (*pgxpool.Pool, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pool, err := store.Connect(cctx, url, maxConns)
	if err != nil {
		return nil, fail(1, "%s: %v", variable, err)
	}
	return pool, nil
}

// migrateVariable names the variable migrations connect by, for errors.
func migrateVariable(getenv func(string) string) string {
	if getenv("CONTRACTD_MIGRATE_DATABASE_URL") != "" {
		return "CONTRACTD_MIGRATE_DATABASE_URL"
	}
	return "DATABASE_URL"
}

// runMigrations applies pending migrations on a pool of its own on url, closed
// once they are done: a direct connection, where goose's session lock
// holds (see CONTRACTD_MIGRATE_DATABASE_URL).
func runMigrations(ctx context.Context, variable, url string) error {
	pool, db, err := openDatabase(ctx, variable, url, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	defer db.Close()
	if err := migrations.Up(ctx, db); err != nil {
		return fail(1, "%s: %v", variable, err)
	}
	return nil
}

// openDatabase connects to url with a pool of maxConns within 10 seconds
// and returns the pool and a database/sql handle on it (for goose). The
// error is one line for the user, naming variable, the setting url came
// from.
func openDatabase(ctx context.Context, variable, url string, maxConns int) (*pgxpool.Pool, *sql.DB, error) {
	pool, err := connectPool(ctx, variable, url, maxConns)
	if err != nil {
		return nil, nil, err
	}
	return pool, stdlib.OpenDBFromPool(pool), nil
}
