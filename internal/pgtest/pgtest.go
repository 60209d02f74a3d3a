// Package pgtest gives tests a real, private Postgres schema.
//
// Each call to New creates a fresh schema in the test database, migrates it
// with contractd's own migrations, and returns a pool whose connections see
// only that schema (search_path). Tests can therefore run in parallel and
// never see each other's rows. The schema is dropped when the test ends.
//
// The server is found through CONTRACTD_TEST_DATABASE_URL, by default
// postgres://postgres@127.0.0.1:5432/contractd_test?sslmode=disable; the
// database is created when it is missing.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	neturl "net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/migrations"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
)

// DefaultURL is the test database used when CONTRACTD_TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/contractd_test?sslmode=disable"

// URL returns the test database's connection string.
func URL() string {
	if u := os.Getenv("CONTRACTD_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Schema is a private, migrated schema for one test.
type Schema struct {
	Name string
	// Database is the database the schema is in.
	Database string
	// URL connects to the test database with search_path set to the schema,
	// for starting a contractd process on it.
	URL  string
	Pool *pgxpool.Pool
}

// New creates, migrates and returns a private schema, dropped at cleanup.
func New(t testing.TB) *Schema {
	t.Helper()
	return NewOn(t, URL())
}

// NewOn is New on the server and database that url names, such as a
// throwaway cluster a fault test started itself.
func NewOn(t testing.TB, url string) *Schema {
	t.Helper()
	s := newUnmigratedOn(t, url)
	db := stdlib.OpenDBFromPool(s.Pool)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("pgtest: migrate %s: %v", s.Name, err)
	}
	return s
}

// NewUnmigrated creates an empty private schema, dropped at cleanup.
func NewUnmigrated(t testing.TB) *Schema {
	t.Helper()
	return newUnmigratedOn(t, URL())
}

func newUnmigratedOn(t testing.TB, url string) *Schema {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ensureDatabase(ctx, t, url)
	name := uniqueName()
	createDropped(ctx, t, url, "CREATE SCHEMA "+name, "DROP SCHEMA "+name+" CASCADE")
	pool := newPool(ctx, t, url, func(cfg *pgxpool.Config) { cfg.ConnConfig.RuntimeParams["search_path"] = name })
	return &Schema{Name: name, Database: pool.Config().ConnConfig.Database, URL: withSearchPath(url, name), Pool: pool}
}

// NewDatabase creates a private database on the test server, migrates its
// public schema on a direct connection, and returns it; the database is
// dropped at cleanup. Its URL sets no search_path, so that it can be
// reached through a pooler that refuses that start-up parameter (pgbouncer
// 1.18 does): such a test names the database, not a schema.
func NewDatabase(t testing.TB) *Schema {
	t.Helper()
	return newDatabase(t, true)
}

// NewUnmigratedDatabase is NewDatabase left empty: for a test whose
// process under test migrates it.
func NewUnmigratedDatabase(t testing.TB) *Schema {
	t.Helper()
	return newDatabase(t, false)
}

func newDatabase(t testing.TB, migrate bool) *Schema {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url := URL()
	ensureDatabase(ctx, t, url)
	name := uniqueName()
	// FORCE: a pooler may still hold server sessions on it.
	createDropped(ctx, t, url, "CREATE DATABASE "+name, "DROP DATABASE "+name+" WITH (FORCE)")
	pool := newPool(ctx, t, url, func(cfg *pgxpool.Config) { cfg.ConnConfig.Database = name })
	if !migrate {
		return &Schema{Name: "public", Database: name, URL: withDatabase(url, name), Pool: pool}
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	if err := migrations.Up(ctx, db); err != nil {
		t.Fatalf("pgtest: migrate database %s: %v", name, err)
	}
	return &Schema{Name: "public", Database: name, URL: withDatabase(url, name), Pool: pool}
}

// uniqueName is a fresh name for a test's schema or database.
func uniqueName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "t_" + hex.EncodeToString(b[:])
}

// createDropped runs create on the server at url, and drop at the test's
// cleanup.
func createDropped(ctx context.Context, t testing.TB, url, create, drop string) {
	t.Helper()
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("pgtest: connect %s: %v (is Postgres running? bash .ci/run starts one)", url, err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, create); err != nil {
		t.Fatalf("pgtest: %s: %v", create, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Errorf("pgtest: cleanup connect: %v", err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, drop); err != nil {
			t.Errorf("pgtest: %s: %v", drop, err)
		}
	})
}

// OpenOn opens a pool of 8 on the database url names as it is (its public
// schema: a throwaway cluster's, see internal/pgcluster), migrated first
// when migrate is set; the pool is closed when the test ends.
func OpenOn(t testing.TB, url string, migrate bool) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	if migrate {
		db := stdlib.OpenDBFromPool(pool)
		defer db.Close()
		if err := migrations.Up(ctx, db); err != nil {
			t.Fatalf("pgtest: migrate: %v", err)
		}
	}
	return pool
}

// newPool opens a pool of 20 on url, set by configure, closed at cleanup.
func newPool(ctx context.Context, t testing.TB, url string, configure func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	configure(cfg)
	cfg.MaxConns = 20
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// withDatabase is url naming database instead of its own.
func withDatabase(url, database string) string {
	u, err := neturl.Parse(url)
	if err != nil {
		return url
	}
	u.Path = "/" + database
	return u.String()
}

func withSearchPath(url, schema string) string {
	if strings.Contains(url, "?") {
		return url + "&search_path=" + schema
	}
	return url + "?search_path=" + schema
}

// ensureDatabase creates the test database when the server lacks it.
func ensureDatabase(ctx context.Context, t testing.TB, url string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		c.Close(ctx)
		return
	}
	dbName := cfg.Database
	cfg.Database = "postgres"
	c, err2 := pgx.ConnectConfig(ctx, cfg)
	if err2 != nil {
		t.Fatalf("pgtest: connect to %s: %v (is Postgres running? bash .ci/run starts one)", url, err)
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, fmt.Sprintf("CREATE DATABASE %q", dbName))
	if err != nil && !isDuplicateDatabase(err) {
		t.Fatalf("pgtest: create database %s: %v", dbName, err)
	}
}

func isDuplicateDatabase(err error) bool {
	var pg *pgconn.PgError
	// 42P04: duplicate_database; 23505: a concurrent CREATE DATABASE won the race.
	return errors.As(err, &pg) && (pg.Code == "42P04" || pg.Code == "23505")
}
