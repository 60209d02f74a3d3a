package main

// End-to-end tests of issue 20's two connection settings:
// CONTRACTD_MIGRATE_DATABASE_URL (migrations on a direct connection while
// the serving pool goes through a pooler) and CONTRACTD_DB_READ_URL (the
// console's overview, contract lists and CSV export on a standby, the rest
// on the primary).

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgbouncer"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/store"
)

// readyz asks the stack's /readyz and decodes its answer.
func readyz(t *testing.T, s *stack) (int, map[string]string) {
	t.Helper()
	r := s.do(http.MethodGet, "/readyz", "", nil)
	var out map[string]string
	r.JSON(t, &out)
	return r.Status, out
}

// serve --migrate with DATABASE_URL through a real pgbouncer in transaction
// mode and CONTRACTD_MIGRATE_DATABASE_URL on a direct connection (through a
// TCP proxy that counts its connections): the migrations run on the direct
// connection, whose pool is closed once they are done and never used
// again; readiness finds the schema current through pgbouncer; and the
// server serves.
func TestMigrateURLMigratesDirectlyWhileDATABASE_URLGoesThroughPgBouncer(t *testing.T) {
	t.Parallel()
	b := pgbouncer.Start(t, pgbouncer.Options{Upstream: pgtest.URL(), PoolSize: 2})
	direct := ntStartDBProxy(t)
	s := startStack(t, stackOptions{Bouncer: b, ExecMode: "cache_describe", Unmigrated: true, Migrate: true,
		EnvFor: func(db *pgtest.Schema) map[string]string {
			return map[string]string{"CONTRACTD_MIGRATE_DATABASE_URL": direct.URL(db.URL)}
		}})
	if !strings.Contains(s.Env["DATABASE_URL"], ":"+strconv.Itoa(b.Port)+"/") {
		t.Fatalf("DATABASE_URL %q does not go through the pgbouncer on port %d", s.Env["DATABASE_URL"], b.Port)
	}
	versions, tables := cliSchemaShape(t, s.DB)
	refVersions, refTables := cliSchemaShape(t, pgtest.New(t))
	if !slices.Equal(versions, refVersions) || !slices.Equal(tables, refTables) {
		t.Fatalf("schema after serve --migrate: versions %v tables %v; want %v %v", versions, tables, refVersions, refTables)
	}
	migrated := direct.accepted.Load()
	if migrated == 0 {
		t.Fatal("no connection went through CONTRACTD_MIGRATE_DATABASE_URL: the migrations ran elsewhere")
	}
	eventually(t, time.Minute, "the migration pool to close its connections", func() bool { return direct.Open() == 0 })

	if st, body := readyz(t, s); st != http.StatusOK || body["db"] != "ok" || body["db_read"] != "" {
		t.Fatalf("/readyz through pgbouncer: %d %v; want 200 db ok, no db_read (no standby configured)", st, body)
	}
	ntPreSign(t, s, "through-bouncer")
	if r := s.do(http.MethodGet, "/v1/contracts/through-bouncer", appToken, nil); r.Status != http.StatusOK {
		t.Fatalf("GET through pgbouncer: %d %s", r.Status, r.Body)
	}
	if n := direct.accepted.Load(); n != migrated {
		t.Fatalf("serving opened %d connections on CONTRACTD_MIGRATE_DATABASE_URL, want none", n-migrated)
	}
}

// Without CONTRACTD_MIGRATE_DATABASE_URL, serve --migrate migrates on
// DATABASE_URL.
func TestServeMigrateWithoutTheMigrateURLMigratesOnDATABASE_URL(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{Unmigrated: true, Migrate: true})
	if _, ok := s.Env["CONTRACTD_MIGRATE_DATABASE_URL"]; ok {
		t.Fatal("the stack set CONTRACTD_MIGRATE_DATABASE_URL")
	}
	versions, tables := cliSchemaShape(t, s.DB)
	refVersions, refTables := cliSchemaShape(t, pgtest.New(t))
	if !slices.Equal(versions, refVersions) || !slices.Equal(tables, refTables) {
		t.Fatalf("schema after serve --migrate: versions %v tables %v; want %v %v", versions, tables, refVersions, refTables)
	}
	ntPreSign(t, s, "migrated-here")
	if st, body := readyz(t, s); st != http.StatusOK || body["db"] != "ok" {
		t.Fatalf("/readyz: %d %v", st, body)
	}
}

var overviewCount = regexp.MustCompile(`id="count-([a-z_]+)">(\d+)<`)

// overviewCounts reads the overview page's contracts by state.
func overviewCounts(body string) map[string]string {
	out := map[string]string{}
	for _, m := range overviewCount.FindAllStringSubmatch(body, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// CONTRACTD_DB_READ_URL points at another schema, standing for a standby,
// that holds other contracts than the primary: the console's contract
// list, CSV export and overview show the standby's rows, while the API
// (one contract, the list, a contract's events, the feed), the console's
// contract page and its live feed show the primary's. /readyz reports the
// standby as db_read; when the standby goes away it says so and stays 200,
// the API keeps working, and the console's list answers 503 until the
// standby is back.
func TestReadURLServesOnlyTheConsoleReports(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	replica := pgtest.New(t)
	failed, err := json.Marshal(domain.CallError{Code: "SYSTEM_ERROR", Message: "busy", At: time.Now().UTC(), Op: domain.CallPreSign})
	if err != nil {
		t.Fatal(err)
	}
	rst := store.New(replica.Pool)
	for _, code := range []string{"on-replica-1", "on-replica-2"} {
		if _, err := rst.Create(ctx, domain.Contract{OutContractCode: code, Product: domain.ProductPapay, Channel: domain.ChannelApp,
			PlanID: new(int64(123)), UserDisplayName: "Li Si", State: domain.StateCreated}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := replica.Pool.Exec(ctx, `UPDATE contracts SET last_error = $1 WHERE out_contract_code = 'on-replica-1'`, failed); err != nil {
		t.Fatal(err)
	}
	standby := ntStartDBProxy(t)
	s := startStack(t, stackOptions{Env: map[string]string{"CONTRACTD_DB_READ_URL": standby.URL(replica.URL)}})
	ntPreSign(t, s, "on-primary")
	// The primary's contract has failed too: were the overview read there,
	// it would list it.
	if _, err := s.DB.Pool.Exec(ctx, `UPDATE contracts SET last_error = $1 WHERE out_contract_code = 'on-primary'`, failed); err != nil {
		t.Fatal(err)
	}

	// The API: the primary.
	if r := s.do(http.MethodGet, "/v1/contracts/on-primary", appToken, nil); r.Status != http.StatusOK {
		t.Fatalf("GET the primary's contract: %d %s", r.Status, r.Body)
	}
	if r := s.do(http.MethodGet, "/v1/contracts/on-replica-1", appToken, nil); r.Status != http.StatusNotFound {
		t.Fatalf("GET the standby's contract: %d %s, want 404 (the API reads the primary)", r.Status, r.Body)
	}
	var page struct {
		Items []struct {
			OutContractCode string `json:"out_contract_code"`
		} `json:"items"`
	}
	s.do(http.MethodGet, "/v1/contracts", opsToken, nil).JSON(t, &page)
	if len(page.Items) != 1 || page.Items[0].OutContractCode != "on-primary" {
		t.Fatalf("GET /v1/contracts: %+v, want only on-primary (the API's list reads the primary)", page.Items)
	}
	// The feed serves a row once every transaction older than it has
	// ended, other tests' in the shared cluster included: wait for it.
	eventually(t, time.Minute, "GET /v1/events serving the primary's pre-sign", func() bool {
		page.Items = nil
		s.do(http.MethodGet, "/v1/events", opsToken, nil).JSON(t, &page)
		return len(page.Items) > 0
	})
	for _, e := range page.Items {
		if e.OutContractCode != "on-primary" {
			t.Fatalf("GET /v1/events has a row of %s, want only on-primary's", e.OutContractCode)
		}
	}

	c := newConsoleClient(t, s.URL)
	if r := c.signIn(opsToken); r.Status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", r.Status)
	}
	// The reports: the standby.
	list := c.do(http.MethodGet, "/ops/contracts", nil)
	if list.Status != http.StatusOK || !strings.Contains(list.Body, "on-replica-1") || !strings.Contains(list.Body, "on-replica-2") ||
		strings.Contains(list.Body, "on-primary") {
		t.Fatalf("console list: %d, want the standby's two contracts and not the primary's:\n%.2000s", list.Status, list.Body)
	}
	export := c.do(http.MethodGet, "/ops/contracts.csv", nil)
	rows, err := csv.NewReader(strings.NewReader(export.Body)).ReadAll()
	if export.Status != http.StatusOK || err != nil || len(rows) != 3 {
		t.Fatalf("CSV export: %d %v, %d rows; want the header and two rows:\n%s", export.Status, err, len(rows), export.Body)
	}
	if got := []string{rows[1][1], rows[2][1]}; !slices.Equal(got, []string{"on-replica-1", "on-replica-2"}) {
		t.Fatalf("CSV export's contracts %v, want the standby's", got)
	}
	ov := c.do(http.MethodGet, "/ops/?fresh=1", nil)
	counts := overviewCounts(ov.Body)
	if ov.Status != http.StatusOK || counts["created"] != "2" || counts["session_issued"] != "0" {
		t.Fatalf("overview: %d, counts by state %v; want the standby's 2 created and no session_issued", ov.Status, counts)
	}
	if !strings.Contains(ov.Body, "on-replica-1") || strings.Contains(ov.Body, "on-primary") {
		t.Fatalf("overview's failing contracts are not the standby's:\n%.3000s", ov.Body)
	}
	// A contract's page and the live feed: the primary.
	if r := c.do(http.MethodGet, "/ops/contract?code=on-primary", nil); r.Status != http.StatusOK {
		t.Fatalf("console page of the primary's contract: %d", r.Status)
	}
	if r := c.do(http.MethodGet, "/ops/contract?code=on-replica-1", nil); r.Status != http.StatusNotFound {
		t.Fatalf("console page of the standby's contract: %d, want 404 (a contract's page reads the primary)", r.Status)
	}
	var feed struct {
		Items []struct {
			Contract string `json:"contract"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(c.do(http.MethodGet, "/ops/feed.json", nil).Body), &feed); err != nil || len(feed.Items) == 0 {
		t.Fatalf("console live feed: %v, %d rows; want the primary's pre-sign", err, len(feed.Items))
	}
	for _, e := range feed.Items {
		if !strings.Contains(e.Contract, "on-primary") {
			t.Fatalf("console live feed has a row of %s, want only on-primary's", e.Contract)
		}
	}
	if r := c.do(http.MethodGet, "/ops/feed", nil); r.Status != http.StatusOK || !strings.Contains(r.Body, "on-primary") || strings.Contains(r.Body, "on-replica") {
		t.Fatalf("console feed page: %d, want the primary's rows only", r.Status)
	}

	// The read pool has CONTRACTD_DB_MAX_CONNS connections (6 on a stack)
	// and metrics of its own; the reports above acquired from it.
	if v := metricValue(t, s, "contractd_db_read_pool_max_conns"); v != 6 {
		t.Fatalf("contractd_db_read_pool_max_conns %v, want 6", v)
	}
	if v := metricValue(t, s, "contractd_db_read_pool_acquires_total"); v == 0 {
		t.Fatal("contractd_db_read_pool_acquires_total is 0 after the reports")
	}

	// Readiness reports the standby, and a standby gone away costs the
	// reports only.
	if st, body := readyz(t, s); st != http.StatusOK || body["db"] != "ok" || body["db_read"] != "ok" {
		t.Fatalf("/readyz: %d %v; want 200, db ok, db_read ok", st, body)
	}
	standby.Cut()
	if st, body := readyz(t, s); st != http.StatusOK || body["status"] != "ready" || body["db"] != "ok" || body["db_read"] != "unreachable" {
		t.Fatalf("/readyz with the standby away: %d %v; want 200 ready, db ok, db_read unreachable", st, body)
	}
	if r := c.do(http.MethodGet, "/ops/contracts", nil); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("console list with the standby away: %d, want 503", r.Status)
	}
	if r := s.do(http.MethodGet, "/v1/contracts/on-primary", appToken, nil); r.Status != http.StatusOK {
		t.Fatalf("GET with the standby away: %d %s", r.Status, r.Body)
	}
	if r := c.do(http.MethodGet, "/ops/contract?code=on-primary", nil); r.Status != http.StatusOK {
		t.Fatalf("console contract page with the standby away: %d", r.Status)
	}
	standby.Restore(t)
	eventually(t, time.Minute, "db_read ok once the standby is back", func() bool {
		_, body := readyz(t, s)
		return body["db_read"] == "ok"
	})
	eventually(t, time.Minute, "the console list once the standby is back", func() bool {
		return c.do(http.MethodGet, "/ops/contracts", nil).Status == http.StatusOK
	})
}

// A standby whose schema is behind the binary's is reported as such, and
// the replica stays ready.
func TestReadURLWithTheSchemaBehindIsReportedAndStaysReady(t *testing.T) {
	t.Parallel()
	behind := pgtest.NewUnmigrated(t)
	s := startStack(t, stackOptions{Env: map[string]string{"CONTRACTD_DB_READ_URL": behind.URL}})
	if st, body := readyz(t, s); st != http.StatusOK || body["db"] != "ok" || body["db_read"] != "schema_behind" {
		t.Fatalf("/readyz: %d %v; want 200, db ok, db_read schema_behind", st, body)
	}
}

// contractd dev with DATABASE_URL through pgbouncer in transaction mode
// and CONTRACTD_MIGRATE_DATABASE_URL direct (through a counting proxy):
// dev migrates on the migrate URL, then serves (its demo pre-sign goes
// through pgbouncer), and stops when its context ends.
func TestDevMigratesOnTheMigrateURL(t *testing.T) {
	t.Parallel()
	b := pgbouncer.Start(t, pgbouncer.Options{Upstream: pgtest.URL(), PoolSize: 2})
	direct := ntStartDBProxy(t)
	db := pgtest.NewUnmigratedDatabase(t)
	env := map[string]string{
		"DATABASE_URL":                   b.URL(db.Database) + "&default_query_exec_mode=cache_describe",
		"CONTRACTD_MIGRATE_DATABASE_URL": direct.URL(db.URL),
		"CONTRACTD_HTTP_ADDR":            cliFreeAddr(t),
		"SIM_ADDR":                       cliFreeAddr(t),
		"CONTRACTD_LOG_LEVEL":            "error",
	}
	dev := startDev(t, env)
	stdout, stderr, ctx := dev.stdout, dev.stderr, context.Background()
	if direct.accepted.Load() == 0 {
		t.Fatal("no connection went through CONTRACTD_MIGRATE_DATABASE_URL")
	}
	versions, tables := cliSchemaShape(t, db)
	refVersions, refTables := cliSchemaShape(t, pgtest.New(t))
	if !slices.Equal(versions, refVersions) || !slices.Equal(tables, refTables) {
		t.Fatalf("schema after contractd dev: versions %v tables %v; want %v %v", versions, tables, refVersions, refTables)
	}
	var demos int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM contracts WHERE out_contract_code LIKE 'demo-%' AND state = 'session_issued'`).Scan(&demos); err != nil || demos != 1 {
		t.Fatalf("demo contracts with a session: %d (%v), want 1 (the banner's pre-sign, through pgbouncer)\nstdout: %s\nstderr: %s", demos, err, stdout, stderr)
	}
	dev.stop(t)
}
