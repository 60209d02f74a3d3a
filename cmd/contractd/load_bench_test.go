package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contractd/contractd/internal/pgtest"
)

// Flags of BenchmarkLoad (go test ... -args -load.contracts=10000000).
var (
	loadContracts = flag.Int("load.contracts", 1_000_000, "BenchmarkLoad: contracts in the fresh table")
	loadClients   = flag.Int("load.clients", 16, "BenchmarkLoad: concurrent clients, for contractd and the Postgres ceilings alike")
	loadDuration  = flag.Duration("load.duration", 10*time.Second, "BenchmarkLoad: how long each phase runs")
	loadProfile   = flag.String("load.profile", "", "BenchmarkLoad: directory to write a CPU profile of contractd per phase into")
	loadMaxConns  = flag.Int("load.max-conns", 0, "BenchmarkLoad: CONTRACTD_DB_MAX_CONNS for the server (0: its default)")
	loadGetOnly   = flag.Bool("load.get-only", false, "BenchmarkLoad: measure the GET phase only")
	loadExecMode  = flag.String("load.exec-mode", "", "BenchmarkLoad: default_query_exec_mode in the server's DATABASE_URL (empty: contractd's default)")
	loadServerEnv = flag.String("load.server-env", "", "BenchmarkLoad: extra environment of the server, as NAME=VALUE,NAME=VALUE (GOGC=400, say)")
)

// BenchmarkLoad measures contractd against Postgres's own ceilings in ONE
// run (issue 9): a fresh schema of -load.contracts contracts; pgbench's
// ceilings on that table at the same concurrency (pgbench -M prepared: SELECT
// by key, UPDATE + 2 INSERTs in one transaction, INSERT, each read before and
// after the phase it bounds; UPDATE by key once, for reference); then the real server
// as its own process, with the simulator, driven over HTTP on loopback: GET
// one contract, ingestion of distinct PAPAY.SIGN notifications (signed and
// encrypted before timing), the same while the sweeper expires 10,000
// sessions, and pre-sign. Each figure is printed with its ratio to its
// ceiling and contractd's own CPU time per operation (from /proc). It runs
// once whatever b.N:
//
//	bash scripts/postgres
//	go test -run '^$' -bench BenchmarkLoad -benchtime 1x -timeout 2h ./cmd/contractd/ [-args -load.contracts=10000000 -load.profile=/tmp/prof]
func BenchmarkLoad(b *testing.B) {
	if _, err := exec.LookPath("pgbench"); err != nil {
		b.Fatalf("pgbench is needed for the ceilings (Debian's postgresql-client): %v", err)
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		b.Fatalf("wrk is needed for the GET phase (Debian's wrk: apt-get install wrk): %v", err)
	}
	n, clients, dur := *loadContracts, *loadClients, *loadDuration
	sessions := min(n/2, 150_000) // b-0 .. b-(sessions-1) are open sessions, the rest signed
	const swept = 10_000

	s := startStack(b, stackOptions{Env: map[string]string{"CONTRACTD_LOG_LEVEL": "error"}})
	fillStart := time.Now()
	fillBenchContracts(b, s, n, sessions)
	fmt.Printf("filled %d contracts (%d open sessions) in %s\n", n, sessions, time.Since(fillStart).Round(time.Second))

	// Postgres's ceilings, same table, same concurrency, read before and
	// after each phase (they drift between runs of pgbench alone).
	scripts := map[string]string{
		"select": fmt.Sprintf("\\set k random(%d, %d)\nSELECT * FROM contracts WHERE sub_mchid = '' AND out_contract_code = 'b-' || :k;\n", sessions, n-1),
		"update": fmt.Sprintf("\\set k random(%d, %d)\nUPDATE contracts SET version = version + 1, updated_at = now() WHERE sub_mchid = '' AND out_contract_code = 'b-' || :k;\n", sessions, n-1),
		"txn": fmt.Sprintf("\\set k random(%d, %d)\nBEGIN;\n"+
			"UPDATE contracts SET version = version + 1, updated_at = now() WHERE sub_mchid = '' AND out_contract_code = 'b-' || :k;\n"+
			"INSERT INTO contract_events (contract_pk, sub_mchid, out_contract_code, to_state, event, source, occurred_at) "+
			"VALUES ((SELECT id FROM contracts WHERE sub_mchid = '' AND out_contract_code = 'b-' || :k), '', 'b-' || :k, 'signed', 'sign', 'bench', now());\n"+
			"INSERT INTO wechat_notifications (notification_id, event_type, resource, outcome) VALUES (md5(random()::text || :client_id), 'PAPAY.SIGN', '{}', 'applied');\n"+
			"END;\n", sessions, n-1),
		"insert": "INSERT INTO contracts (out_contract_code, product, channel, state) VALUES ('pb-' || md5(random()::text), 'papay', 'app', 'created');\n",
	}
	ceiling := func(name string) float64 { return pgbenchTPS(b, s.DB, name, scripts[name], clients, dur) }
	updateCeiling := ceiling("update") // a reference: no phase is a one-row UPDATE

	// The real server, its own process, so that its CPU time is its own.
	env := maps.Clone(s.Env)
	env["CONTRACTD_SWEEP_INTERVAL"] = "1s"
	env["CONTRACTD_LOG_LEVEL"] = "error"
	pprofAddr := cliFreeAddr(b)
	env["CONTRACTD_PPROF_ADDR"] = pprofAddr
	delete(env, "CONTRACTD_DB_MAX_CONNS") // the test stacks' small pool: the server's own default unless told
	if *loadMaxConns > 0 {
		env["CONTRACTD_DB_MAX_CONNS"] = strconv.Itoa(*loadMaxConns)
	}
	if *loadExecMode != "" {
		env["DATABASE_URL"] += "&default_query_exec_mode=" + *loadExecMode
	}
	for kv := range strings.SplitSeq(*loadServerEnv, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		} else if kv != "" {
			b.Fatalf("-load.server-env: %q is not NAME=VALUE", kv)
		}
	}
	p := cliStartServe(b, cliBuild(b), env)
	pid := p.cmd.Process.Pid
	b.Cleanup(func() {
		if b.Failed() {
			out := p.stderr.String()
			b.Logf("contractd's log (errors only; its end):\n%s", out[max(0, len(out)-8000):])
		}
	})
	// One kept-alive connection per client, spoken to with a lean HTTP/1.1
	// client (like pgbench's lean C client for the ceilings), so that the
	// load generator's own CPU, on the same two cores, weighs little.
	addr := strings.TrimPrefix(p.URL, "http://")
	conns := make([]*rawConn, clients)
	for i := range conns {
		conns[i] = &rawConn{addr: addr}
		defer conns[i].close()
	}

	var results []loadResult
	// run reads the phase's ceiling, runs the phase, and reads the ceiling
	// again.
	run := func(name, ceilingName string, op func(worker, i int) error) loadResult {
		before := ceiling(ceilingName)
		r := loadPhase(b, s, name, clients, dur, pid, pprofAddr, op)
		r.ceilingName, r.ceilingBefore, r.ceilingAfter = ceilingName, before, ceiling(ceilingName)
		results = append(results, r)
		return r
	}

	// GET through wrk, as issue 19 measured it: random signed contracts.
	getBefore := ceiling("select")
	get := wrkPhase(b, s, "GET /v1/contracts/{code}", p.URL, fmt.Sprintf(`
local headers = {["Authorization"] = "Bearer %s"}
math.randomseed(%d)
request = function() return wrk.format("GET", "/v1/contracts/b-" .. math.random(%d, %d), headers) end
`, appToken, randUint64()%1_000_000, sessions, n-1), clients, dur, pid, pprofAddr)
	get.ceilingName, get.ceilingBefore, get.ceilingAfter = "select", getBefore, ceiling("select")
	results = append(results, get)
	if *loadGetOnly {
		printLoad(n, clients, dur, updateCeiling, results)
		return
	}
	// Notifications: distinct PAPAY.SIGNs for open sessions, prepared first.
	perPhase := min((sessions-swept)/2, 40_000)
	prepare := func(from int) []loadNotification {
		out := make([]loadNotification, perPhase)
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := w; i < perPhase; i += 4 {
					code := "b-" + strconv.Itoa(swept+from+i)
					out[i] = prepareNotification(b, s, code)
				}
			}(w)
		}
		wg.Wait()
		return out
	}
	postAll := func(ns []loadNotification) func(worker, i int) error {
		var next atomic.Int64
		return func(w, _ int) error {
			j := int(next.Add(1) - 1)
			if j >= len(ns) {
				return errExhausted
			}
			return conns[w].expect(http.MethodPost, "/v1/notifications/wechatpay", ns[j].header, ns[j].body, http.StatusNoContent)
		}
	}
	batch := prepare(0)
	notify := run("POST notification (PAPAY.SIGN)", "txn", postAll(batch))

	batch = prepare(perPhase)
	// 10,000 sessions fall due as the phase starts; the sweeper (every
	// second) expires them while the notifications stream.
	sweepBefore := ceiling("txn")
	if _, err := s.DB.Pool.Exec(b.Context(), `UPDATE contracts SET session_expires_at = now() - interval '1 second'
		WHERE sub_mchid = '' AND out_contract_code IN (SELECT 'b-' || g FROM generate_series(0, $1 - 1) g)`, swept); err != nil {
		b.Fatal(err)
	}
	due := time.Now()
	during := loadPhase(b, s, "POST notification while 10k sessions are swept", clients, dur, pid, pprofAddr, postAll(batch))
	expired := s.count(`SELECT count(*) FROM contracts WHERE state = 'expired'`)
	// The rest of the sweep (if any) finishes before pre-sign is measured,
	// so that its CPU is not counted against pre-sign.
	for s.count(`SELECT count(*) FROM contracts WHERE state = 'expired'`) < swept {
		if time.Since(due) > 5*time.Minute {
			b.Fatal("the sweep did not expire the 10,000 due sessions within 5 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var lastExpired time.Time
	if err := s.DB.Pool.QueryRow(b.Context(), `SELECT max(expired_at) FROM contracts WHERE state = 'expired'`).Scan(&lastExpired); err != nil {
		b.Fatal(err)
	}
	sweepTook := lastExpired.Sub(due)
	during.ceilingName, during.ceilingBefore, during.ceilingAfter = "txn", sweepBefore, ceiling("txn")
	results = append(results, during)

	var seq atomic.Int64
	presignHeader := bearer(appToken)
	presignHeader.Set("Content-Type", "application/json")
	run("POST /v1/contracts/pre-sign", "insert", func(w, _ int) error {
		body, _ := json.Marshal(map[string]any{"channel": "app", "out_contract_code": fmt.Sprintf("bp-%d", seq.Add(1)),
			"plan_id": 123, "user_display_name": "Zhang San"})
		return conns[w].expect(http.MethodPost, "/v1/contracts/pre-sign", presignHeader, body, http.StatusCreated)
	})

	printLoad(n, clients, dur, updateCeiling, results)
	fmt.Printf("sweep: %d of %d due sessions expired during the phase, the last %.1f s after they fell due; notification p99 %.2f ms -> %.2f ms while sweeping (%.2fx)\n",
		expired, swept, sweepTook.Seconds(), ms(notify.p99), ms(during.p99), float64(during.p99)/float64(notify.p99))
	if *loadProfile != "" {
		fmt.Printf("CPU profiles of contractd: %s/*.pprof (go tool pprof -top FILE)\n", *loadProfile)
	}
	if stderr := p.stderr.String(); stderr != "" {
		fmt.Printf("contractd's log (errors only):\n%s\n", stderr[:min(len(stderr), 4000)])
	}
	b.ReportMetric(notify.rate, "notifications/s")
}

// fillBenchContracts fills the stack's fresh contracts table with n
// contracts b-0 .. b-(n-1): the first sessions with an open session, the
// rest signed; then vacuums and analyses it, and checkpoints.
func fillBenchContracts(b *testing.B, s *stack, n, sessions int) {
	b.Helper()
	if _, err := s.DB.Pool.Exec(b.Context(), `INSERT INTO contracts (out_contract_code, product, channel, plan_id,
		state, version, session_id, session_expires_at, contract_id, openid, user_display_name, signed_at)
		SELECT 'b-' || g, 'papay', 'app', 123, CASE WHEN g < $2 THEN 'session_issued' ELSE 'signed' END, 2,
		       'sess-' || g, now() + interval '2 hours', CASE WHEN g < $2 THEN '' ELSE 'wx-' || g END,
		       'o-' || g, 'Zhang San', CASE WHEN g < $2 THEN NULL ELSE now() END
		FROM generate_series(0, $1 - 1) g`, n, sessions); err != nil {
		b.Fatal(err)
	}
	if _, err := s.DB.Pool.Exec(b.Context(), `VACUUM ANALYZE contracts`); err != nil {
		b.Fatal(err)
	}
	// The fill's write-ahead log is flushed to the tables now, not by a
	// checkpoint that would fall in a measured phase.
	if _, err := s.DB.Pool.Exec(b.Context(), `CHECKPOINT`); err != nil {
		b.Fatal(err)
	}
}

// printLoad prints the phases' figures beside their ceilings.
func printLoad(n, clients int, dur time.Duration, updateCeiling float64, results []loadResult) {
	fmt.Printf("\nBenchmarkLoad: %d contracts, %d clients, %s per phase, GOMAXPROCS of the machine: %d cores, contractd's default_query_exec_mode: %s\n",
		n, clients, dur, runtimeCores(), cmpOr(*loadExecMode, "(default) cache_statement"))
	fmt.Printf("Postgres ceilings: pgbench -M prepared, same table, same clients, read before and after each phase; the higher is the ceiling.\n")
	fmt.Printf("(select: SELECT by key; txn: UPDATE + 2 INSERTs in one transaction; insert: INSERT; UPDATE by key alone, for reference: %.0f tps)\n", updateCeiling)
	fmt.Printf("%-48s %9s %9s %9s %9s %9s %20s %9s %12s %12s %12s %9s\n", "operation", "ops", "per s", "p50 ms", "p99 ms", "ceiling", "before/after tps", "of it",
		"CPU ms/op", "load gen", "postgres", "pg tx/op")
	for _, r := range results {
		c := max(r.ceilingBefore, r.ceilingAfter)
		fmt.Printf("%-48s %9d %9.0f %9.2f %9.2f %9s %9.0f/%-10.0f %8.0f%% %12.3f %12.3f %12.3f %9.2f\n", r.name, r.ops, r.rate, ms(r.p50), ms(r.p99),
			r.ceilingName, r.ceilingBefore, r.ceilingAfter, 100*r.rate/c, r.cpuPerOp*1000, r.loadCPUPerOp*1000, r.postgresCPUPerOp*1000, r.txPerOp)
	}
	fmt.Printf("(CPU ms/op: contractd's; load gen: the HTTP clients' (wrk for GET, this test process for the rest); postgres: every postgres process's)\n")
}

var errExhausted = fmt.Errorf("no work left")

type loadResult struct {
	name     string
	ops      int
	rate     float64
	p50, p99 time.Duration
	cpuPerOp float64 // seconds of contractd CPU per operation
	// Seconds of CPU per operation of the load generator (this test
	// process) and of every Postgres process, on the same two cores.
	loadCPUPerOp, postgresCPUPerOp float64
	// Postgres transactions (each statement sent outside a transaction
	// is one) in the database per operation, from pg_stat_database.
	txPerOp float64
	// The pgbench ceiling the phase is measured against, in tps, read
	// before and after the phase.
	ceilingName                 string
	ceilingBefore, ceilingAfter float64
}

// phaseRun is what a load driver measured of one phase: each operation's
// latency (or the driver's own percentiles), how long it ran, and the CPU
// the load generator used.
type phaseRun struct {
	ops      int
	elapsed  time.Duration
	p50, p99 time.Duration
	loadCPU  float64 // seconds
}

// measure runs one phase through drive and measures, around it, the
// server's CPU (pid), every Postgres process's CPU and the database's
// transactions, and takes a CPU profile of the server when asked to.
func measure(b *testing.B, s *stack, name string, dur time.Duration, pid int, pprofAddr string, drive func() phaseRun) loadResult {
	b.Helper()
	var profileDone chan struct{}
	if *loadProfile != "" {
		profileDone = make(chan struct{})
		go func() {
			defer close(profileDone)
			saveProfile(b, pprofAddr, name, dur)
		}()
	}
	cpu0, pg0, tx0 := processCPU(b, pid), postgresCPU(b), postgresTransactions(s)
	r := drive()
	cpu, pg := processCPU(b, pid)-cpu0, cpuSince(pg0, postgresCPU(b))
	if profileDone != nil {
		<-profileDone
	}
	time.Sleep(1100 * time.Millisecond) // backends publish their statistics at most once a second
	txs := postgresTransactions(s) - tx0
	if r.ops == 0 {
		b.Fatalf("%s: no operation finished", name)
	}
	per := func(v float64) float64 { return v / float64(r.ops) }
	return loadResult{name: name, ops: r.ops, rate: float64(r.ops) / r.elapsed.Seconds(), p50: r.p50, p99: r.p99,
		cpuPerOp: per(cpu), loadCPUPerOp: per(r.loadCPU), postgresCPUPerOp: per(pg), txPerOp: per(float64(txs))}
}

// loadPhase runs op from clients goroutines of this process for dur (or
// until op says the work is exhausted) and measures it.
func loadPhase(b *testing.B, s *stack, name string, clients int, dur time.Duration, pid int, pprofAddr string, op func(worker, i int) error) loadResult {
	b.Helper()
	return measure(b, s, name, dur, pid, pprofAddr, func() phaseRun {
		self0 := processCPU(b, os.Getpid())
		start := time.Now()
		deadline := start.Add(dur)
		lat := make([][]time.Duration, clients)
		var failed atomic.Value
		var wg sync.WaitGroup
		for w := 0; w < clients; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; time.Now().Before(deadline); i++ {
					t0 := time.Now()
					err := op(w, i)
					if err == errExhausted {
						return
					}
					if err != nil {
						failed.Store(err)
						return
					}
					lat[w] = append(lat[w], time.Since(t0))
				}
			}(w)
		}
		wg.Wait()
		r := phaseRun{elapsed: time.Since(start), loadCPU: processCPU(b, os.Getpid()) - self0}
		if err, _ := failed.Load().(error); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		all := slices.Concat(lat...)
		slices.Sort(all)
		if r.ops = len(all); r.ops > 0 {
			pct := func(p float64) time.Duration { return all[int(math.Ceil(p*float64(len(all))))-1] }
			r.p50, r.p99 = pct(0.50), pct(0.99)
		}
		return r
	})
}

// wrkPhase runs wrk (Debian's wrk: C, epoll, LuaJIT, as lean a client as
// pgbench is for the ceilings) with clients connections on two threads for
// dur, each request made by the Lua function request in script, and
// measures it. Every answer must be 2xx: wrk counts any other status, and
// any socket error, and the phase fails on one.
func wrkPhase(b *testing.B, s *stack, name, url, script string, clients int, dur time.Duration, pid int, pprofAddr string) loadResult {
	b.Helper()
	file := filepath.Join(b.TempDir(), "phase.lua")
	script += `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %d %d %d\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
  io.write(string.format("wrk's latency: p90 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n",
    latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000))
end
`
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		b.Fatal(err)
	}
	return measure(b, s, name, dur, pid, pprofAddr, func() phaseRun {
		cmd := exec.Command("wrk", "-t2", "-c"+strconv.Itoa(clients), "-d"+strconv.Itoa(int(dur.Seconds()))+"s", "--timeout", "30s", "-s", file, url)
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("%s: wrk: %v\n%s", name, err, out)
		}
		var reqs, durUS, p50, p99, bad, sockErrs int64
		i := bytes.Index(out, []byte("WRK "))
		if i < 0 {
			b.Fatalf("%s: wrk printed no result:\n%s", name, out)
		}
		if _, err := fmt.Sscanf(string(out[i:]), "WRK %d %d %d %d %d %d", &reqs, &durUS, &p50, &p99, &bad, &sockErrs); err != nil {
			b.Fatalf("%s: wrk's result: %v\n%s", name, err, out)
		}
		if j := bytes.Index(out, []byte("wrk's latency")); j >= 0 {
			fmt.Printf("%s: %s", name, out[j:])
		}
		if bad > 0 || sockErrs > 0 {
			b.Fatalf("%s: %d answers were not 2xx and %d requests failed on the socket:\n%s", name, bad, sockErrs, out)
		}
		return phaseRun{ops: int(reqs), elapsed: time.Duration(durUS) * time.Microsecond,
			p50: time.Duration(p50) * time.Microsecond, p99: time.Duration(p99) * time.Microsecond,
			loadCPU: (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()}
	})
}

func bearer(token string) http.Header {
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	return h
}

// rawConn is a lean HTTP/1.1 client on one kept-alive connection: it
// writes the request in one go and reads the answer's status line, headers
// and Content-Length body, nothing more.
type rawConn struct {
	addr string
	c    net.Conn
	r    *bufio.Reader
	out  bytes.Buffer
}

func (rc *rawConn) close() {
	if rc.c != nil {
		rc.c.Close()
		rc.c = nil
	}
}

// expect sends one request and checks the answer's status.
func (rc *rawConn) expect(method, path string, header http.Header, body []byte, want int) error {
	reused := rc.c != nil
	status, answer, err := rc.do(method, path, header, body)
	if err != nil && reused {
		// The server closed the kept-alive connection while it idled (its
		// IdleTimeout, while the next phase was prepared): send again on
		// a new one, as Go's client does.
		rc.close()
		status, answer, err = rc.do(method, path, header, body)
	}
	if err != nil {
		rc.close()
		return err
	}
	if status != want {
		return fmt.Errorf("%s %s answered %d %s, want %d", method, path, status, answer, want)
	}
	return nil
}

func (rc *rawConn) do(method, path string, header http.Header, body []byte) (int, []byte, error) {
	if rc.c == nil {
		c, err := net.Dial("tcp", rc.addr)
		if err != nil {
			return 0, nil, err
		}
		rc.c, rc.r = c, bufio.NewReaderSize(c, 16<<10)
	}
	_ = rc.c.SetDeadline(time.Now().Add(time.Minute))
	rc.out.Reset()
	fmt.Fprintf(&rc.out, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", method, path, rc.addr, len(body))
	for k, vs := range header {
		for _, v := range vs {
			rc.out.WriteString(k + ": " + v + "\r\n")
		}
	}
	rc.out.WriteString("\r\n")
	rc.out.Write(body)
	if _, err := rc.c.Write(rc.out.Bytes()); err != nil {
		return 0, nil, err
	}
	line, err := rc.r.ReadSlice('\n')
	if err != nil || len(line) < 12 {
		return 0, nil, fmt.Errorf("status line %q: %v", line, err)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, fmt.Errorf("status line %q", line)
	}
	length, closing := 0, false
	for {
		h, err := rc.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		if len(h) <= 2 {
			break
		}
		name, value, _ := strings.Cut(strings.TrimSpace(string(h)), ":")
		switch strings.ToLower(name) {
		case "content-length":
			length, _ = strconv.Atoi(strings.TrimSpace(value))
		case "connection":
			closing = strings.EqualFold(strings.TrimSpace(value), "close")
		case "transfer-encoding":
			return 0, nil, fmt.Errorf("chunked answers are not read by this client")
		}
	}
	answer := make([]byte, length)
	if _, err := io.ReadFull(rc.r, answer); err != nil {
		return 0, nil, err
	}
	if closing {
		rc.close()
	}
	return status, answer, nil
}

// loadNotification is a notification ready to post: body and WeChat's
// signed headers.
type loadNotification struct {
	body   []byte
	header http.Header
}

func prepareNotification(b *testing.B, s *stack, code string) loadNotification {
	body := ntEnvelope(b, s.Keys, "bench-"+ntRandom(12), "PAPAY.SIGN", ntSignResource(s.Keys, code, "wx-"+code))
	h := ntWeChatHeaders(b, s.Keys, body, s.Keys.PlatformKey)
	h.Set("Content-Type", "application/json")
	return loadNotification{body: body, header: h}
}

// pgbenchTPS runs one pgbench script on the schema at the given
// concurrency and returns its transactions per second. It prints the
// latency percentiles of a tenth of its transactions (pgbench's sampled
// log), the database's own tail beside contractd's.
func pgbenchTPS(b *testing.B, db *pgtest.Schema, name, script string, clients int, dur time.Duration) float64 {
	b.Helper()
	u, err := url.Parse(pgtest.URL())
	if err != nil {
		b.Fatal(err)
	}
	file := filepath.Join(b.TempDir(), name+".sql")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		b.Fatal(err)
	}
	logs := b.TempDir()
	args := []string{"-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, runtimeCores())),
		"-T", strconv.Itoa(int(math.Ceil(dur.Seconds()))), "-f", file,
		"-l", "--sampling-rate", "0.1", "--log-prefix", filepath.Join(logs, "log"),
		"-h", u.Hostname(), "-p", cmpOr(u.Port(), "5432"), "-U", cmpOr(u.User.Username(), "postgres"), strings.TrimPrefix(u.Path, "/")}
	cmd := exec.Command("pgbench", args...)
	cmd.Env = append(os.Environ(), "PGOPTIONS=-c search_path="+db.Name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("pgbench %s: %v\n%s", name, err, out)
	}
	m := regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`).FindSubmatch(out)
	if m == nil {
		b.Fatalf("pgbench %s: no tps in\n%s", name, out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	var lat []int
	files, _ := filepath.Glob(filepath.Join(logs, "log.*"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		// client_id transaction_no time_us script_no epoch epoch_us
		for l := range strings.Lines(string(raw)) {
			if f := strings.Fields(l); len(f) >= 3 {
				us, err := strconv.Atoi(f[2])
				if err != nil {
					b.Fatalf("pgbench %s: log line %q: %v", name, l, err)
				}
				lat = append(lat, us)
			}
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		at := func(q float64) float64 { return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / 1000 }
		fmt.Printf("ceiling %s: %.0f tps; latency (a tenth sampled) p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n",
			name, tps, at(0.5), at(0.99), at(0.999), float64(lat[len(lat)-1])/1000)
	}
	return tps
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// processCPU is the user and system CPU time pid has used, in seconds,
// from /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s).
func processCPU(b *testing.B, pid int) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	_, cpu := statCPU(raw)
	return cpu
}

// statCPU reads a /proc/PID/stat line: the command name (field 2, in
// parentheses, which may hold spaces) and user plus system CPU seconds.
func statCPU(raw []byte) (string, float64) {
	open, end := bytes.IndexByte(raw, '('), bytes.LastIndexByte(raw, ')')
	if open < 0 || end < open || end+2 > len(raw) {
		return "", 0
	}
	fields := strings.Fields(string(raw[end+2:]))
	if len(fields) < 13 {
		return "", 0
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return string(raw[open+1 : end]), (utime + stime) / 100
}

// postgresTransactions is the number of transactions the database has
// committed or rolled back, from pg_stat_database.
func postgresTransactions(s *stack) int {
	return s.count(`SELECT (xact_commit + xact_rollback)::int FROM pg_stat_database WHERE datname = current_database()`)
}

// postgresCPU is the CPU time, in seconds, each live process named
// postgres on the machine has used so far: the postmaster, its helpers and
// every backend.
func postgresCPU(b *testing.B) map[int]float64 {
	b.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	out := map[int]float64{}
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue // gone since the listing
		}
		if name, cpu := statCPU(raw); name == "postgres" {
			out[pid] = cpu
		}
	}
	return out
}

// cpuSince is the CPU time Postgres processes used since before: the
// growth of those alive at both readings, plus all of those started since
// (a backend that ended in between is not counted; the server's pool keeps
// its connections across a phase, and pgbench does not run during one).
func cpuSince(before, now map[int]float64) float64 {
	total := 0.0
	for pid, cpu := range now {
		total += cpu - before[pid]
	}
	return total
}

// saveProfile takes a CPU profile of contractd for dur and writes it to
// the -load.profile directory.
func saveProfile(b *testing.B, addr, phase string, dur time.Duration) {
	if err := os.MkdirAll(*loadProfile, 0o755); err != nil {
		b.Error(err)
		return
	}
	name := strings.Trim(regexp.MustCompile(`[^a-z0-9]+`).ReplaceAllString(strings.ToLower(phase), "-"), "-")
	// The CPU profile and the allocations of the same seconds, side by side.
	var wg sync.WaitGroup
	for kind, file := range map[string]string{"profile": name + ".pprof", "allocs": name + ".allocs.pprof"} {
		wg.Go(func() {
			resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", addr, kind, int(dur.Seconds())))
			if err != nil {
				b.Errorf("%s %s: %v", kind, phase, err)
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(filepath.Join(*loadProfile, file))
			if err != nil {
				b.Error(err)
				return
			}
			defer f.Close()
			_, _ = io.Copy(f, resp.Body)
		})
	}
	wg.Wait()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func runtimeCores() int {
	n := 0
	raw, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "processor") {
			n++
		}
	}
	return max(n, 1)
}

// randUint64 is math/rand/v2's: no system call per request, unlike
// crypto/rand, so the load generator's CPU stays small.
func randUint64() uint64 { return rand.Uint64() }
