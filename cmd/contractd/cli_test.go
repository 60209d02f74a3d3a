package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/wechatpaysim"
)

// cliBuild builds the contractd binary into a directory removed when t ends.
func cliBuild(t testing.TB) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is not on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "contractd")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// cliResult is how a finished process ended.
type cliResult struct {
	Code   int
	Stdout string
	Stderr string
}

// cliEnviron turns an environment map into exec's form. Only PATH and HOME
// come from the test's own environment, so nothing else leaks in.
func cliEnviron(env map[string]string) []string {
	out := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// cliRun runs the binary to completion (at most a minute).
func cliRun(t *testing.T, bin string, env map[string]string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cliEnviron(env)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := cliResult{Stdout: stdout.String(), Stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("contractd %v: %v", args, err)
		}
		res.Code = ee.ExitCode()
	}
	return res
}

// cliLines splits output into its non-empty lines.
func cliLines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// cliServeEnv is a complete, valid serve configuration on dbURL, with fresh
// keys; WeChat's hosts point at a port where nothing listens.
func cliServeEnv(t *testing.T, dbURL string) map[string]string {
	t.Helper()
	keys, err := wechatpaysim.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := keys.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	env := simulatedWeChatEnv(keys, dir, "http://127.0.0.1:1")
	maps.Copy(env, map[string]string{
		"DATABASE_URL":         dbURL,
		"CONTRACTD_HTTP_ADDR":  "127.0.0.1:0",
		"CONTRACTD_API_TOKENS": "app:" + appToken + ",ops:" + opsToken,
		"WECHATPAY_MODE":       "common",
		"CONTRACTD_LOG_LEVEL":  "error",
	})
	return env
}

// cliFreeAddr returns a loopback address nothing listens on (yet).
func cliFreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := newLoopbackListener()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// cliProcess is a contractd process serving in the background.
type cliProcess struct {
	URL    string
	cmd    *exec.Cmd
	stderr *bytes.Buffer // written by exec's copier until exit
	exited chan struct{}
	err    error
}

// cliStartServe starts `contractd serve` on a free loopback port and waits
// until /healthz answers; the process is killed when t ends if still running.
func cliStartServe(t testing.TB, bin string, env map[string]string) *cliProcess {
	t.Helper()
	// A free port may be taken by another test's process between choosing
	// it and the server's listen: then choose another.
	for attempt := 1; ; attempt++ {
		p, busy := cliTryServeAt(t, bin, env, cliFreeAddr(t))
		if !busy {
			return p
		}
		if attempt == 5 {
			t.Fatal("contractd serve found its port taken five times in a row")
		}
	}
}

// cliStartServeAt is cliStartServe on a given address.
func cliStartServeAt(t testing.TB, bin string, env map[string]string, addr string) *cliProcess {
	t.Helper()
	p, busy := cliTryServeAt(t, bin, env, addr)
	if busy {
		t.Fatalf("contractd serve: %s is taken", addr)
	}
	return p
}

// cliTryServeAt starts serve on addr; busy reports (with a nil process)
// that the address was taken, and any other failure fails the test.
func cliTryServeAt(t testing.TB, bin string, env map[string]string, addr string) (p *cliProcess, busy bool) {
	t.Helper()
	env = maps.Clone(env)
	env["CONTRACTD_HTTP_ADDR"] = addr
	cmd := exec.Command(bin, "serve")
	cmd.Env = cliEnviron(env)
	p = &cliProcess{URL: "http://" + addr, cmd: cmd, stderr: &bytes.Buffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.exited:
			if strings.Contains(p.stderr.String(), "address already in use") {
				return nil, true
			}
			t.Fatalf("contractd serve exited early: %v\n%s", p.err, p.stderr)
		default:
		}
		resp, err := http.Get(p.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, false
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("contractd serve did not answer /healthz on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop sends SIGTERM and waits for the exit; it returns the exit code.
func (p *cliProcess) Stop(t *testing.T) int {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("contractd did not exit within 30s of SIGTERM")
	}
	return p.cmd.ProcessState.ExitCode()
}

// cliSchemaShape describes a migrated schema: goose's applied versions in
// order and the tables in the schema.
func cliSchemaShape(t *testing.T, db *pgtest.Schema) (versions []int64, tables []string) {
	t.Helper()
	rows, err := db.Pool.Query(t.Context(), `SELECT version_id FROM goose_db_version WHERE is_applied ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	rows.Close()
	rows, err = db.Pool.Query(t.Context(), `SELECT table_name FROM information_schema.tables
		WHERE table_schema = $1 ORDER BY table_name`, db.Name)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, n)
	}
	rows.Close()
	return versions, tables
}

// TestCLI runs the built binary as a process.
func TestCLI(t *testing.T) {
	t.Parallel()
	bin := cliBuild(t)

	t.Run("HelpExitsZeroAndListsDATABASE_URL", func(t *testing.T) {
		t.Parallel()
		r := cliRun(t, bin, nil, "--help")
		if r.Code != 0 || !strings.Contains(r.Stdout, "DATABASE_URL") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and usage naming DATABASE_URL", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("HelpListsEveryConfigVariableInOneColumn", func(t *testing.T) {
		t.Parallel()
		r := cliRun(t, bin, nil, "--help")
		_, vars, _ := strings.Cut(r.Stdout, "Configuration (environment):\n")
		col := -1
		for line := range strings.Lines(vars) {
			line = strings.TrimRight(line, "\n")
			if line == "" {
				break
			}
			name, rest, _ := strings.Cut(strings.TrimPrefix(line, "  "), " ")
			if !strings.HasPrefix(line, "   ") && rest == "" {
				continue // a name too long for the column, its text on the next line
			}
			// The description starts in the same column on every line.
			start := len(line) - len(strings.TrimLeft(line[2+len(name):], " "))
			if strings.HasPrefix(line, "   ") {
				start = len(line) - len(strings.TrimLeft(line, " "))
			}
			if col == -1 {
				col = start
			}
			if start != col {
				t.Errorf("help line %q: text starts at column %d, the others at %d", line, start, col)
			}
		}
		for _, v := range config.Variables {
			if !strings.Contains(vars, "  "+v+" ") && !strings.Contains(vars, "  "+v+"\n") {
				t.Errorf("--help does not list %s", v)
			}
		}
	})

	t.Run("HealthcheckFollowsReadiness", func(t *testing.T) {
		t.Parallel()
		s := startStack(t, stackOptions{})
		addr := strings.TrimPrefix(s.URL, "http://")
		if r := cliRun(t, bin, map[string]string{"CONTRACTD_HTTP_ADDR": addr}, "healthcheck"); r.Code != 0 {
			t.Fatalf("healthcheck of a ready service: exit %d, stderr %q", r.Code, r.Stderr)
		}
		s.Stop()
		if r := cliRun(t, bin, map[string]string{"CONTRACTD_HTTP_ADDR": addr}, "healthcheck"); r.Code != 1 || len(cliLines(r.Stderr)) != 1 {
			t.Fatalf("healthcheck of a stopped service: exit %d, stderr %q; want 1 and one line", r.Code, r.Stderr)
		}
	})

	t.Run("MigrateUpTwiceIsANoOpTheSecondTime", func(t *testing.T) {
		t.Parallel()
		db := pgtest.NewUnmigrated(t)
		env := map[string]string{"DATABASE_URL": db.URL}
		r := cliRun(t, bin, env, "migrate", "up")
		if r.Code != 0 || !strings.Contains(r.Stdout, "applied 1") {
			t.Fatalf("first up: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		v1, t1 := cliSchemaShape(t, db)
		r = cliRun(t, bin, env, "migrate", "up")
		if r.Code != 0 || !strings.Contains(r.Stdout, "already current") || strings.Contains(r.Stdout, "applied") {
			t.Fatalf("second up: exit %d, stdout %q, stderr %q; want 0 and \"already current\"", r.Code, r.Stdout, r.Stderr)
		}
		v2, t2 := cliSchemaShape(t, db)
		if !slices.Equal(v1, v2) || !slices.Equal(t1, t2) {
			t.Fatalf("the second up changed the schema: %v %v -> %v %v", v1, t1, v2, t2)
		}
	})

	t.Run("MigrateDownToZeroThenUpAgain", func(t *testing.T) {
		t.Parallel()
		db := pgtest.NewUnmigrated(t)
		env := map[string]string{"DATABASE_URL": db.URL}
		if r := cliRun(t, bin, env, "migrate", "up"); r.Code != 0 {
			t.Fatalf("up: exit %d: %s", r.Code, r.Stderr)
		}
		files, err := filepath.Glob("../../migrations/*.sql")
		if err != nil || len(files) == 0 {
			t.Fatalf("migration files: %v %v", files, err)
		}
		// Each down rolls back the newest applied migration.
		for v := len(files); v >= 1; v-- {
			r := cliRun(t, bin, env, "migrate", "down")
			if r.Code != 0 || !strings.Contains(r.Stdout, fmt.Sprintf("rolled back %d ", v)) {
				t.Fatalf("down: exit %d, stdout %q, stderr %q; want version %d rolled back", r.Code, r.Stdout, r.Stderr, v)
			}
		}
		r := cliRun(t, bin, env, "migrate", "status")
		if r.Code != 0 || !strings.Contains(r.Stdout, "pending") || strings.Contains(r.Stdout, "applied") {
			t.Fatalf("status after down: exit %d, stdout %q, stderr %q; want the migration pending", r.Code, r.Stdout, r.Stderr)
		}
		if _, tables := cliSchemaShape(t, db); slices.Contains(tables, "contracts") {
			t.Fatalf("tables after down: %v", tables)
		}
		r = cliRun(t, bin, env, "migrate", "up")
		if r.Code != 0 || !strings.Contains(r.Stdout, "applied 1 ") || !strings.Contains(r.Stdout, fmt.Sprintf("applied %d ", len(files))) {
			t.Fatalf("up again: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		r = cliRun(t, bin, env, "migrate", "status")
		if r.Code != 0 || strings.Contains(r.Stdout, "pending") || !strings.Contains(r.Stdout, "applied") {
			t.Fatalf("status after up again: exit %d, stdout %q", r.Code, r.Stdout)
		}
	})

	t.Run("TwoProcessesMigratingAtOnceBothSucceedWithOneSchema", func(t *testing.T) {
		t.Parallel()
		db := pgtest.NewUnmigrated(t)
		env := cliEnviron(map[string]string{"DATABASE_URL": db.URL})
		type run struct {
			cmd            *exec.Cmd
			stdout, stderr bytes.Buffer
		}
		runs := []*run{{}, {}}
		for _, r := range runs {
			r.cmd = exec.Command(bin, "migrate", "up")
			r.cmd.Env = env
			r.cmd.Stdout, r.cmd.Stderr = &r.stdout, &r.stderr
		}
		for _, r := range runs {
			if err := r.cmd.Start(); err != nil {
				t.Fatal(err)
			}
		}
		applied := 0
		for i, r := range runs {
			if err := r.cmd.Wait(); err != nil {
				t.Fatalf("process %d: %v\nstdout %s\nstderr %s", i, err, &r.stdout, &r.stderr)
			}
			if strings.Contains(r.stdout.String(), "applied 1") {
				applied++
			}
		}
		if applied != 1 {
			t.Errorf("%d processes say they applied migration 1, want exactly 1", applied)
		}
		versions, tables := cliSchemaShape(t, db)
		ref := pgtest.New(t)
		refVersions, refTables := cliSchemaShape(t, ref)
		if !slices.Equal(versions, refVersions) || !slices.Equal(tables, refTables) {
			t.Fatalf("schema after concurrent migrations: versions %v tables %v; a single migration gives %v %v",
				versions, tables, refVersions, refTables)
		}
	})

	t.Run("ServeWithUnreachableDatabaseExitsWithOneLine", func(t *testing.T) {
		t.Parallel()
		env := cliServeEnv(t, "postgres://postgres@127.0.0.1:1/x?sslmode=disable")
		r := cliRun(t, bin, env, "serve")
		lines := cliLines(r.Stderr)
		if r.Code == 0 || len(lines) != 1 {
			t.Fatalf("exit %d, stderr %q; want non-zero and exactly one line", r.Code, r.Stderr)
		}
		if l := lines[0]; !strings.Contains(l, "127.0.0.1:1") || !strings.Contains(strings.ToLower(l), "unreachable") {
			t.Fatalf("stderr %q does not name the unreachable database", l)
		}
	})

	t.Run("ServeWithAnUnreachableReadURLExitsWithOneLineNamingIt", func(t *testing.T) {
		t.Parallel()
		env := cliServeEnv(t, pgtest.New(t).URL)
		env["CONTRACTD_DB_READ_URL"] = "postgres://postgres@127.0.0.1:1/standby?sslmode=disable"
		r := cliRun(t, bin, env, "serve")
		lines := cliLines(r.Stderr)
		if r.Code != 1 || len(lines) != 1 {
			t.Fatalf("exit %d, stderr %q; want 1 and exactly one line", r.Code, r.Stderr)
		}
		if l := lines[0]; !strings.HasPrefix(l, "contractd: CONTRACTD_DB_READ_URL: ") || !strings.Contains(l, "127.0.0.1:1") ||
			!strings.Contains(l, "unreachable") {
			t.Fatalf("stderr %q does not name CONTRACTD_DB_READ_URL and its unreachable server", l)
		}
	})

	t.Run("MigrateRunsOnCONTRACTD_MIGRATE_DATABASE_URL", func(t *testing.T) {
		t.Parallel()
		db := pgtest.NewUnmigrated(t)
		// DATABASE_URL leads nowhere: only the migrate URL can be used.
		env := map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/x?sslmode=disable", "CONTRACTD_MIGRATE_DATABASE_URL": db.URL}
		if r := cliRun(t, bin, env, "migrate", "up"); r.Code != 0 || !strings.Contains(r.Stdout, "applied 1 ") {
			t.Fatalf("up: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		versions, tables := cliSchemaShape(t, db)
		refVersions, refTables := cliSchemaShape(t, pgtest.New(t))
		if !slices.Equal(versions, refVersions) || !slices.Equal(tables, refTables) {
			t.Fatalf("schema after migrate up: %v %v; want %v %v", versions, tables, refVersions, refTables)
		}
		if r := cliRun(t, bin, env, "migrate", "status"); r.Code != 0 || strings.Contains(r.Stdout, "pending") {
			t.Fatalf("status: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("MigrateWithAnUnreachableMigrateURLNamesItAndLeavesDATABASE_URLAlone", func(t *testing.T) {
		t.Parallel()
		db := pgtest.NewUnmigrated(t)
		env := map[string]string{"DATABASE_URL": db.URL, "CONTRACTD_MIGRATE_DATABASE_URL": "postgres://postgres@127.0.0.1:1/x?sslmode=disable"}
		r := cliRun(t, bin, env, "migrate", "up")
		lines := cliLines(r.Stderr)
		if r.Code != 1 || len(lines) != 1 || !strings.HasPrefix(lines[0], "contractd: CONTRACTD_MIGRATE_DATABASE_URL: ") ||
			!strings.Contains(lines[0], "127.0.0.1:1") {
			t.Fatalf("exit %d, stderr %q; want 1 and one line naming CONTRACTD_MIGRATE_DATABASE_URL", r.Code, r.Stderr)
		}
		var tables int
		if err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM information_schema.tables WHERE table_schema = $1`, db.Name).Scan(&tables); err != nil || tables != 0 {
			t.Fatalf("DATABASE_URL's schema has %d tables (%v), want none: it was migrated", tables, err)
		}
	})

	t.Run("ServeWithoutWECHATPAY_MCHIDExitsWithOneLineNamingIt", func(t *testing.T) {
		t.Parallel()
		env := cliServeEnv(t, "postgres://postgres@127.0.0.1:1/x?sslmode=disable")
		delete(env, "WECHATPAY_MCHID")
		r := cliRun(t, bin, env, "serve")
		lines := cliLines(r.Stderr)
		if r.Code == 0 || len(lines) != 1 || !strings.Contains(lines[0], "WECHATPAY_MCHID") {
			t.Fatalf("exit %d, stderr %q; want non-zero and one line naming WECHATPAY_MCHID", r.Code, r.Stderr)
		}
	})

	t.Run("ServeWithSeveralBadSettingsPrintsEveryOneOnItsOwnLine", func(t *testing.T) {
		t.Parallel()
		env := cliServeEnv(t, "postgres://postgres@127.0.0.1:1/x?sslmode=disable")
		delete(env, "WECHATPAY_MCHID")
		delete(env, "CONTRACTD_PUBLIC_URL")
		env["CONTRACTD_DB_MAX_CONNS"] = "lots"
		env["WECHATPAY_APIV3_KEY"] = "too-short-secret"
		r := cliRun(t, bin, env, "serve")
		want := []string{"CONTRACTD_DB_MAX_CONNS", "CONTRACTD_PUBLIC_URL", "WECHATPAY_MCHID", "WECHATPAY_APIV3_KEY"}
		lines := cliLines(r.Stderr)
		if r.Code != 2 || len(lines) != len(want) {
			t.Fatalf("exit %d, stderr %q; want 2 and one line for each of %v", r.Code, r.Stderr, want)
		}
		for i, l := range lines {
			if !strings.HasPrefix(l, "contractd: configuration: "+want[i]+": ") {
				t.Errorf("line %d %q does not name %s", i, l, want[i])
			}
		}
		if strings.Contains(r.Stderr, "too-short-secret") {
			t.Errorf("stderr leaks the APIv3 key: %q", r.Stderr)
		}
	})

	t.Run("ServeWithABadPoolSizeExitsWithOneLineNamingIt", func(t *testing.T) {
		t.Parallel()
		for _, v := range []string{"0", "-3", "lots", "100000"} {
			env := cliServeEnv(t, "postgres://postgres@127.0.0.1:1/x?sslmode=disable")
			env["CONTRACTD_DB_MAX_CONNS"] = v
			r := cliRun(t, bin, env, "serve")
			lines := cliLines(r.Stderr)
			if r.Code == 0 || len(lines) != 1 || !strings.Contains(lines[0], "CONTRACTD_DB_MAX_CONNS") {
				t.Fatalf("CONTRACTD_DB_MAX_CONNS=%s: exit %d, stderr %q; want non-zero and one line naming it", v, r.Code, r.Stderr)
			}
		}
	})

	t.Run("SIGTERMShutsServeDownWithExitZero", func(t *testing.T) {
		t.Parallel()
		db := pgtest.New(t)
		p := cliStartServe(t, bin, cliServeEnv(t, db.URL))
		if code := p.Stop(t); code != 0 {
			t.Fatalf("exit %d after SIGTERM, want 0; stderr %s", code, p.stderr)
		}
	})
}

func TestCLIReadyzFollowsTheDatabase(t *testing.T) {
	t.Parallel()
	proxy := ntStartDBProxy(t)
	s := startStack(t, stackOptions{DatabaseURL: proxy.URL})
	ready := func() int { return s.do(http.MethodGet, "/readyz", "", nil).Status }
	if st := ready(); st != http.StatusOK {
		t.Fatalf("/readyz %d before the database went away, want 200", st)
	}
	proxy.Cut()
	eventually(t, 10*time.Second, "/readyz 503 with the database away", func() bool {
		return ready() == http.StatusServiceUnavailable
	})
	// It stays 503 while the database is away.
	for range 3 {
		if st := ready(); st != http.StatusServiceUnavailable {
			t.Fatalf("/readyz %d with the database away, want 503", st)
		}
	}
	proxy.Restore(t)
	eventually(t, 10*time.Second, "/readyz 200 once the database is back", func() bool {
		return ready() == http.StatusOK
	})
}

// TestCLIServeLogsTheQueryExecModeItUses starts serve with and without
// default_query_exec_mode in DATABASE_URL and reads the mode from the
// start-up line: the operator's choice when named, cache_statement when not.
func TestCLIServeLogsTheQueryExecModeItUses(t *testing.T) {
	t.Parallel()
	bin := cliBuild(t)
	db := pgtest.New(t)
	for _, tc := range []struct {
		name, url, want string
	}{
		{"DefaultIsCacheStatement", db.URL, "cache_statement"},
		{"CacheDescribeFromTheURL", db.URL + "&default_query_exec_mode=cache_describe", "cache_describe"},
		{"CacheStatementFromTheURL", db.URL + "&default_query_exec_mode=cache_statement", "cache_statement"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := cliServeEnv(t, tc.url)
			env["CONTRACTD_LOG_LEVEL"] = "info"
			p := cliStartServe(t, bin, env)
			if code := p.Stop(t); code != 0 {
				t.Fatalf("exit %d after SIGTERM, want 0; stderr %s", code, p.stderr)
			}
			var got []string
			for line := range strings.Lines(p.stderr.String()) {
				var rec struct {
					Msg  string `json:"msg"`
					Mode string `json:"db_query_exec_mode"`
				}
				if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "contractd serving" {
					got = append(got, rec.Mode)
				}
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Fatalf("start-up lines name the exec modes %q, want exactly [%q]; stderr:\n%s", got, tc.want, p.stderr)
			}
		})
	}
}
