package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contractd/contractd/internal/pgbouncer"
	"github.com/contractd/contractd/internal/pgtest"
)

// pgbouncerSubset is the part of the end-to-end suite that also runs
// through a real pgbouncer in transaction mode: a pre-sign, a
// notification, a sweep, a termination, the feed and the console's
// sign-in. Each runs the same function its direct test runs.
var pgbouncerSubset = []struct {
	name string
	env  map[string]string
	run  func(t *testing.T, s *stack)
	// prepare, when set, adds to the stack's options what the scenario
	// needs and returns what to do once the stack has started.
	prepare func(o *stackOptions) func(s *stack)
}{
	{"PreSign", nil, presignConcurrentIdenticalRequestsOpenOneSession, nil},
	{"Notification", nil, notifyFiveConcurrentDuplicatesApplyOnce, nil},
	{"Sweep", map[string]string{"CONTRACTD_SWEEP_INTERVAL": "100ms"}, opsSweeperExpiresTheDueSessions, nil},
	{"Terminate", nil, opsTerminateRecordedAsOps, holdTerminateAnswersUntilNotified},
	{"Feed", nil, opsFeedPagesEveryRowExactlyOnce, nil},
	{"ConsoleSignIn", map[string]string{"CONTRACTD_API_TOKENS": "app:" + appToken + ",ops:" + opsToken + ",ops:alice:" + aliceToken},
		consoleSignInWithStrictCookies, nil},
}

// TestPgBouncerTransactionModeWithCacheDescribeRunsTheSubset runs the
// subset with contractd connecting through Debian's pgbouncer (1.18 on
// bookworm: no named prepared statements across server sessions) in
// transaction mode, with default_query_exec_mode=cache_describe, each
// scenario on a database of its own.
func TestPgBouncerTransactionModeWithCacheDescribeRunsTheSubset(t *testing.T) {
	t.Parallel()
	b := pgbouncer.Start(t, pgbouncer.Options{Upstream: pgtest.URL(), PoolSize: 2})
	for _, sc := range pgbouncerSubset {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			o := stackOptions{Bouncer: b, ExecMode: "cache_describe", Env: sc.env}
			started := func(*stack) {}
			if sc.prepare != nil {
				started = sc.prepare(&o)
			}
			s := startStack(t, o)
			started(s)
			sc.run(t, s)
		})
	}
}

// TestPgBouncerCacheStatementThroughAnOldPoolerAnswers503NamingTheFix
// points contractd, in cache_statement mode, at a pgbouncer in transaction
// mode that does not carry named prepared statements (default_pool_size 2,
// 16 concurrent clients): a statement prepared on one server session is
// missing on the other, or already there. Every request gets an answer
// (no hang), each failure is 503 UNAVAILABLE (never a 500), and the log
// line of each names default_query_exec_mode=cache_describe as the fix.
func TestPgBouncerCacheStatementThroughAnOldPoolerAnswers503NamingTheFix(t *testing.T) {
	t.Parallel()
	b := pgbouncer.Start(t, pgbouncer.Options{Upstream: pgtest.URL(), PoolSize: 2})
	logs := &logBuffer{}
	s := startStack(t, stackOptions{Bouncer: b, ExecMode: "cache_statement", LogOut: logs,
		Env: map[string]string{"CONTRACTD_DB_MAX_CONNS": "16"}})
	if _, err := s.DB.Pool.Exec(t.Context(), `INSERT INTO contracts (out_contract_code, product, channel, plan_id, state)
		SELECT 'pb-' || g, 'papay', 'app', 123, 'created' FROM generate_series(0, 15) g`); err != nil {
		t.Fatal(err)
	}
	const clients, each = 16, 30
	type answer struct {
		status int
		code   string
		err    error
	}
	answers := make([][]answer, clients)
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				r, err := send(t, s.URL, request{Method: http.MethodGet, Path: fmt.Sprintf("/v1/contracts/pb-%d", w),
					Token: appToken, Client: client})
				if err != nil {
					answers[w] = append(answers[w], answer{err: err})
					return
				}
				var e struct {
					Code string `json:"code"`
				}
				_ = json.Unmarshal(r.Body, &e)
				answers[w] = append(answers[w], answer{status: r.Status, code: e.Code})
			}
		}()
	}
	wg.Wait()
	statuses := map[int]int{}
	for w, as := range answers {
		for _, a := range as {
			if a.err != nil {
				t.Fatalf("client %d: no answer: %v", w, a.err)
			}
			statuses[a.status]++
			if a.status != http.StatusOK && (a.status != http.StatusServiceUnavailable || a.code != "UNAVAILABLE") {
				t.Errorf("client %d: %d %s, want 200 or 503 UNAVAILABLE", w, a.status, a.code)
			}
		}
	}
	t.Logf("answers by status: %v", statuses)
	if statuses[http.StatusServiceUnavailable] == 0 {
		t.Fatalf("no 503 among %v: cache_statement through pgbouncer %s in transaction mode did not fail", statuses, "1.18")
	}
	failed := logs.lines("request failed")
	n503 := 0
	for _, l := range failed {
		if l["status"] != float64(http.StatusServiceUnavailable) {
			t.Errorf("log line of a failure that is not a 503: %v", l)
			continue
		}
		n503++
		if e, _ := l["error"].(string); !strings.Contains(e, "default_query_exec_mode=cache_describe") {
			t.Errorf("503 log line does not name default_query_exec_mode=cache_describe: %v", l)
		}
	}
	if n503 != statuses[http.StatusServiceUnavailable] {
		t.Errorf("%d 503 log lines for %d 503 answers", n503, statuses[http.StatusServiceUnavailable])
	}
}
