package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/lifecycle"
	"github.com/contractd/contractd/store"
	"github.com/contractd/contractd/wechatpaysim"
)

// opsSigned pre-signs code, signs it as the user and waits until contractd
// has it signed and the sign notification is acknowledged.
func opsSigned(t *testing.T, s *stack, code string) *wechatpaysim.Contract {
	t.Helper()
	ntPreSign(t, s, code)
	c := ntSign(t, s, code)
	eventually(t, 5*time.Second, code+" signed", func() bool {
		if ntState(t, s, code) != "signed" {
			return false
		}
		for _, d := range ntDeliveries(s, code) {
			if !d.Done {
				return false
			}
		}
		return true
	})
	return c
}

// opsHistory is GET /v1/contracts/{code}/events decoded.
type opsHistory struct {
	Items []struct {
		ID      int64  `json:"id"`
		From    string `json:"from"`
		To      string `json:"to"`
		Event   string `json:"event"`
		Source  string `json:"source"`
		Ignored bool   `json:"ignored"`
	} `json:"items"`
}

// opsErrorCode checks status and the error body's code.
func opsErrorCode(t *testing.T, r response, status int, code string) {
	t.Helper()
	var body struct {
		Code string `json:"code"`
	}
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	r.JSON(t, &body)
	if body.Code != code {
		t.Fatalf("code %q, want %q: %s", body.Code, code, r.Body)
	}
}

// WeChat's PAPAY.TERMINATE reaches contractd only after WeChat's answer to
// the operator's terminate call has been recorded: it is a repeat.
func TestOpsTerminateSignedContractAndTheFollowingNotificationIsANoOp(t *testing.T) {
	t.Parallel()
	gate := &atTerminateGate{open: make(chan struct{})}
	front := httptest.NewServer(gate)
	defer front.Close()
	s := startStack(t, stackOptions{NotifyTarget: front.URL})
	gate.target.Store(&s.URL)
	opsTerminateAndCheck(t, s, "repeat", func() { close(gate.open) })
}

// WeChat sends PAPAY.TERMINATE as it terminates; here its answer to the
// terminate call reaches contractd only once that notification has been
// acknowledged. The notification applies the termination on the
// operator's behalf, and the termination is still the operator's.
func TestOpsTerminateIsRecordedAsOpsWhenWeChatAnswersAfterItsNotification(t *testing.T) {
	t.Parallel()
	var o stackOptions
	started := holdTerminateAnswersUntilNotified(&o)
	s := startStack(t, o)
	started(s)
	opsTerminateRecordedAsOps(t, s)
}

// holdTerminateAnswersUntilNotified sets o up so that WeChat's answer to a
// terminate call waits until its PAPAY.TERMINATE has been acknowledged;
// the returned function must be called with the stack once started.
func holdTerminateAnswersUntilNotified(o *stackOptions) func(s *stack) {
	var sim atomic.Pointer[wechatpaysim.Simulator]
	o.WrapSim = atHoldTerminateAnswersUntilNotified(&sim)
	return func(s *stack) { sim.Store(s.Sim) }
}

// opsTerminateRecordedAsOps is the operator's terminate on a stack set up
// by holdTerminateAnswersUntilNotified: the notification applies the
// termination, recorded as the operator's.
func opsTerminateRecordedAsOps(t *testing.T, s *stack) {
	opsTerminateAndCheck(t, s, "applied", func() {})
}

// opsTerminateAndCheck terminates a signed contract as an operator and
// checks that the termination is recorded once, from source ops, and that
// WeChat's PAPAY.TERMINATE is acknowledged, kept in the inbox with outcome
// wantOutcome, and writes no history row of its own. answered runs once
// contractd has answered the terminate.
func opsTerminateAndCheck(t *testing.T, s *stack, wantOutcome string, answered func()) {
	t.Helper()
	const code = "ops-term-1"
	opsSigned(t, s, code)

	r := s.do(http.MethodPost, "/v1/contracts/"+code+"/terminate", opsToken, map[string]string{"note": "customer asked"})
	if r.Status != http.StatusOK {
		t.Fatalf("terminate: %d %s", r.Status, r.Body)
	}
	if st := r.Map(t)["state"]; st != "terminated" {
		t.Fatalf("terminate answered state %v, want terminated", st)
	}
	answered()
	// WeChat's PAPAY.TERMINATE that follows is acknowledged...
	eventually(t, 5*time.Second, "the PAPAY.TERMINATE delivery acknowledged", func() bool {
		for _, d := range ntDeliveries(s, code) {
			if d.EventType == "PAPAY.TERMINATE" && d.Done {
				return true
			}
		}
		return false
	})
	for _, d := range ntDeliveries(s, code) {
		if d.EventType == "PAPAY.TERMINATE" {
			if st := ntStatuses(d); st[len(st)-1] != http.StatusNoContent {
				t.Errorf("PAPAY.TERMINATE answered %v, want 204", st)
			}
		}
	}
	// ...and changes nothing: the termination is recorded once, by ops.
	es := ntEvents(t, s, code)
	if got := strings.Join(ntEventNames(es), ","); got != "issue_session,sign,terminate" {
		t.Fatalf("history %v, want issue_session,sign,terminate", got)
	}
	if term := es[2]; term.Source != "ops" || term.From != "signed" || term.To != "terminated" || term.Ignored {
		t.Fatalf("terminate row %+v, want signed->terminated from source ops", term)
	}
	if n := s.count(`SELECT count(*) FROM contract_events WHERE out_contract_code = $1 AND event = 'terminate'
		AND source = 'ops' AND details->>'note' = 'customer asked'`, code); n != 1 {
		t.Errorf("%d terminate rows from ops carrying the operator's note, want 1", n)
	}
	// The notification is in the inbox once, with the one outcome its
	// order makes.
	if n := s.count(`SELECT count(*) FROM wechat_notifications WHERE out_contract_code = $1 AND event_type = 'PAPAY.TERMINATE'`, code); n != 1 {
		t.Errorf("%d PAPAY.TERMINATE inbox rows, want 1", n)
	}
	var outcome string
	if err := s.DB.Pool.QueryRow(context.Background(), `SELECT outcome FROM wechat_notifications
		WHERE out_contract_code = $1 AND event_type = 'PAPAY.TERMINATE'`, code).Scan(&outcome); err != nil {
		t.Fatal(err)
	}
	if outcome != wantOutcome {
		t.Errorf("the PAPAY.TERMINATE inbox row's outcome is %q, want %q", outcome, wantOutcome)
	}
	if st := ntState(t, s, code); st != "terminated" {
		t.Fatalf("state %s, want terminated", st)
	}
}

func TestOpsRoutesAnswerErrorsAndReadHistory(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})

	t.Run("TerminateNonSignedIs409INVALID_STATE", func(t *testing.T) {
		ntPreSign(t, s, "ops-open-1")
		r := s.do(http.MethodPost, "/v1/contracts/ops-open-1/terminate", opsToken, map[string]string{"note": "n"})
		opsErrorCode(t, r, http.StatusConflict, "INVALID_STATE")
		if st := ntState(t, s, "ops-open-1"); st != "session_issued" {
			t.Fatalf("state %s after a refused terminate", st)
		}
	})

	t.Run("TerminateUnknownIs404CONTRACT_NOT_EXIST", func(t *testing.T) {
		r := s.do(http.MethodPost, "/v1/contracts/ops-nobody/terminate", opsToken, map[string]string{"note": "n"})
		opsErrorCode(t, r, http.StatusNotFound, "CONTRACT_NOT_EXIST")
	})

	t.Run("ContractEventsOldestFirst", func(t *testing.T) {
		const code = "ops-hist-1"
		opsSigned(t, s, code)
		if r := s.do(http.MethodPost, "/v1/contracts/"+code+"/terminate", opsToken, map[string]string{"note": "bye"}); r.Status != http.StatusOK {
			t.Fatalf("terminate: %d %s", r.Status, r.Body)
		}
		r := s.do(http.MethodGet, "/v1/contracts/"+code+"/events", opsToken, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("events: %d %s", r.Status, r.Body)
		}
		var h opsHistory
		r.JSON(t, &h)
		var got []string
		for i, it := range h.Items {
			got = append(got, it.Event)
			if i > 0 && it.ID <= h.Items[i-1].ID {
				t.Fatalf("events not oldest first: %s", r.Body)
			}
		}
		if strings.Join(got, ",") != "issue_session,sign,terminate" {
			t.Fatalf("events %v, want issue_session,sign,terminate", got)
		}
		if r := s.do(http.MethodGet, "/v1/contracts/ops-nobody/events", opsToken, nil); r.Status != http.StatusNotFound {
			t.Fatalf("events of an unknown contract: %d, want 404", r.Status)
		}
	})

	t.Run("EventFeedPagesEveryRowExactlyOnce", func(t *testing.T) { opsFeedPagesEveryRowExactlyOnce(t, s) })

	t.Run("ListContractsFiltersAndCursor", func(t *testing.T) {
		from := time.Now().Add(-time.Second).UTC().Format(time.RFC3339)
		for i := range 3 {
			ntPreSignAt(t, s.URL, fmt.Sprintf("ops-list-a%d", i), 777)
		}
		ntPreSignAt(t, s.URL, "ops-list-b0", 778)
		signedCode := "ops-list-a1"
		ntSign(t, s, signedCode)
		eventually(t, 5*time.Second, "ops-list-a1 signed", func() bool { return ntState(t, s, signedCode) == "signed" })

		list := func(q string) (codes []string, next string) {
			t.Helper()
			r := s.do(http.MethodGet, "/v1/contracts?"+q, opsToken, nil)
			if r.Status != http.StatusOK {
				t.Fatalf("list %s: %d %s", q, r.Status, r.Body)
			}
			var l struct {
				Items []struct {
					Code   string `json:"out_contract_code"`
					State  string `json:"state"`
					PlanID int64  `json:"plan_id"`
				} `json:"items"`
				NextCursor string `json:"next_cursor"`
			}
			r.JSON(t, &l)
			for _, it := range l.Items {
				codes = append(codes, it.Code)
			}
			return codes, l.NextCursor
		}
		// Paging by plan_id, two at a time.
		var all []string
		cursor := ""
		for range 5 {
			q := "plan_id=777&limit=2"
			if cursor != "" {
				q += "&cursor=" + url.QueryEscape(cursor)
			}
			codes, next := list(q)
			all = append(all, codes...)
			if next == "" {
				break
			}
			cursor = next
		}
		if strings.Join(all, ",") != "ops-list-a0,ops-list-a1,ops-list-a2" {
			t.Fatalf("plan_id=777 pages gave %v", all)
		}
		if codes, next := list("plan_id=777&state=signed"); strings.Join(codes, ",") != "ops-list-a1" || next != "" {
			t.Fatalf("plan_id=777&state=signed gave %v (next %q)", codes, next)
		}
		if codes, _ := list("plan_id=778&channel=app&created_from=" + url.QueryEscape(from)); strings.Join(codes, ",") != "ops-list-b0" {
			t.Fatalf("plan_id=778&channel=app&created_from gave %v", codes)
		}
		if codes, _ := list("plan_id=777&channel=h5"); len(codes) != 0 {
			t.Fatalf("plan_id=777&channel=h5 gave %v, want none", codes)
		}
		if codes, _ := list("plan_id=777&created_to=" + url.QueryEscape(from)); len(codes) != 0 {
			t.Fatalf("created_to before they were created gave %v, want none", codes)
		}
		opsErrorCode(t, s.do(http.MethodGet, "/v1/contracts?state=bogus", opsToken, nil), http.StatusBadRequest, "PARAM_ERROR")
		opsErrorCode(t, s.do(http.MethodGet, "/v1/contracts?cursor=not-ours", opsToken, nil), http.StatusBadRequest, "PARAM_ERROR")
	})

	t.Run("AppTokenOnOpsRoutesIs403", func(t *testing.T) {
		ntPreSign(t, s, "ops-scope-1")
		for _, rt := range []struct{ method, path string }{
			{http.MethodGet, "/v1/contracts"},
			{http.MethodGet, "/v1/contracts/ops-scope-1/events"},
			{http.MethodPost, "/v1/contracts/ops-scope-1/terminate"},
			{http.MethodPost, "/v1/contracts/ops-scope-1/sync"},
			{http.MethodGet, "/v1/events"},
		} {
			var body any
			if rt.method == http.MethodPost {
				body = map[string]string{"note": "n"}
			}
			r := s.do(rt.method, rt.path, appToken, body)
			if r.Status != http.StatusForbidden {
				t.Errorf("%s %s with the app token: %d, want 403", rt.method, rt.path, r.Status)
				continue
			}
			opsErrorCode(t, r, http.StatusForbidden, "FORBIDDEN")
		}
		if r := s.do(http.MethodGet, "/v1/contracts/ops-scope-1", appToken, nil); r.Status != http.StatusOK {
			t.Errorf("GET one contract with the app token: %d, want 200", r.Status)
		}
		if st := ntState(t, s, "ops-scope-1"); st != "session_issued" {
			t.Errorf("state %s after refused ops calls", st)
		}
	})
}

func TestOpsSyncSignsContractWhoseNotificationsWereDropped(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	const code = "ops-sync-1"
	ntPreSign(t, s, code)
	s.Sim.SetFaults(wechatpaysim.Faults{DropDeliveries: true})
	ntSign(t, s, code)
	// The simulator dropped the sign notification: contractd never hears of it.
	if ds := ntDeliveries(s, code); len(ds) != 1 || !ds[0].Dropped || len(ds[0].Attempts) != 0 || !s.Sim.Idle() {
		t.Fatalf("deliveries %+v, want the one sign notification dropped, nothing sent", ds)
	}
	if st := ntState(t, s, code); st != "session_issued" {
		t.Fatalf("state %s before sync, want session_issued (deliveries dropped)", st)
	}
	r := s.do(http.MethodPost, "/v1/contracts/"+code+"/sync", opsToken, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("sync: %d %s", r.Status, r.Body)
	}
	if st := r.Map(t)["state"]; st != "signed" {
		t.Fatalf("sync answered state %v, want signed", st)
	}
	if st := ntState(t, s, code); st != "signed" {
		t.Fatalf("stored state %s, want signed", st)
	}
	es := ntEvents(t, s, code)
	if len(es) != 2 || es[1].Event != "sign" || es[1].Source != "reconcile" {
		t.Fatalf("history %+v, want issue_session then sign (source reconcile)", es)
	}
	opsErrorCode(t, s.do(http.MethodPost, "/v1/contracts/ops-nobody/sync", opsToken, nil), http.StatusNotFound, "CONTRACT_NOT_EXIST")
}

// opsRoundRobin spreads requests over backends in turn.
type opsRoundRobin struct {
	mu       sync.Mutex
	backends []*httputil.ReverseProxy
	hits     []int
	n        atomic.Uint64
}

func (rr *opsRoundRobin) set(urls []string) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	for _, u := range urls {
		target, _ := url.Parse(u)
		rr.backends = append(rr.backends, httputil.NewSingleHostReverseProxy(target))
	}
	rr.hits = make([]int, len(urls))
}

func (rr *opsRoundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rr.mu.Lock()
	if len(rr.backends) == 0 {
		rr.mu.Unlock()
		http.Error(w, `{"code":"FAIL","message":"no backend yet"}`, http.StatusBadGateway)
		return
	}
	i := int(rr.n.Add(1) % uint64(len(rr.backends)))
	b := rr.backends[i]
	rr.hits[i]++
	rr.mu.Unlock()
	b.ServeHTTP(w, r)
}

func (rr *opsRoundRobin) counts() []int {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return slices.Clone(rr.hits)
}

func TestOpsTwoProcessesOnOneDatabaseRecordEveryTransitionOnce(t *testing.T) {
	t.Parallel()
	bin := cliBuild(t)
	rr := &opsRoundRobin{}
	front := httptest.NewServer(rr)
	t.Cleanup(front.Close)
	s := startStack(t, stackOptions{NotifyTarget: front.URL})

	env := maps.Clone(s.Env)
	env["CONTRACTD_SWEEP_INTERVAL"] = "50ms"
	procs := []*cliProcess{cliStartServe(t, bin, env), cliStartServe(t, bin, env)}
	t.Cleanup(func() {
		for i, p := range procs {
			if code := p.Stop(t); code != 0 {
				t.Errorf("process %d exited %d: %s", i, code, p.stderr)
			}
		}
	})
	rr.set([]string{procs[0].URL, procs[1].URL})

	const n = 40
	code := func(i int) string { return fmt.Sprintf("ops-rep-%02d", i) }
	for i := range n {
		ntPreSignAt(t, procs[i%2].URL, code(i), 123)
	}
	var signCodes, expireCodes []string
	for i := range n {
		if i%2 == 0 {
			signCodes = append(signCodes, code(i))
		} else {
			expireCodes = append(expireCodes, code(i))
		}
	}
	s.Sim.SetFaults(wechatpaysim.Faults{DuplicateDeliveries: 4})
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, c := range signCodes {
			if _, err := s.Sim.Sign(context.Background(), wechatpaysim.SignRequest{OutContractCode: c}); err != nil {
				t.Errorf("sign %s: %v", c, err)
			}
		}
	})
	if _, err := s.DB.Pool.Exec(t.Context(), `UPDATE contracts SET session_expires_at = now() - interval '1 second'
		WHERE out_contract_code = ANY($1)`, expireCodes); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	eventually(t, 20*time.Second, "every contract settled and every delivery acknowledged", func() bool {
		signed := s.count(`SELECT count(*) FROM contracts WHERE state = 'signed' AND out_contract_code = ANY($1)`, signCodes)
		expired := s.count(`SELECT count(*) FROM contracts WHERE state = 'expired' AND out_contract_code = ANY($1)`, expireCodes)
		if signed != len(signCodes) || expired != len(expireCodes) {
			return false
		}
		ds := s.Sim.Deliveries()
		if len(ds) != 5*len(signCodes) {
			return false
		}
		for _, d := range ds {
			if !d.Done && !d.GaveUp {
				return false
			}
		}
		return true
	})
	// More sweeps run on the settled contracts and change nothing: a
	// session due after everything settled is expired, so a whole sweep
	// started after that point and went over them too.
	ntPreSignAt(t, procs[0].URL, "ops-rep-canary", 123)
	if _, err := s.DB.Pool.Exec(t.Context(), `UPDATE contracts SET session_expires_at = now() - interval '1 second'
		WHERE out_contract_code = 'ops-rep-canary'`); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a later sweep to expire the canary", func() bool { return ntState(t, s, "ops-rep-canary") == "expired" })

	for _, d := range s.Sim.Deliveries() {
		if !d.Done {
			t.Errorf("delivery %s copy %d of %s: attempts %v, never acknowledged", d.ID, d.Copy, d.OutContractCode, ntStatuses(d))
		}
	}
	hits := rr.counts()
	if hits[0] == 0 || hits[1] == 0 {
		t.Errorf("deliveries per process %v: both processes should have taken some", hits)
	}
	for _, c := range signCodes {
		es := ntEvents(t, s, c)
		if got := strings.Join(ntEventNames(es), ","); got != "issue_session,sign" || ntState(t, s, c) != "signed" {
			t.Errorf("%s: state %s, history %s; want signed with issue_session,sign", c, ntState(t, s, c), got)
		}
	}
	for _, c := range expireCodes {
		es := ntEvents(t, s, c)
		if got := strings.Join(ntEventNames(es), ","); got != "issue_session,expire" || ntState(t, s, c) != "expired" {
			t.Errorf("%s: state %s, history %s; want expired with issue_session,expire", c, ntState(t, s, c), got)
		}
	}
	if n := s.count(`SELECT count(*) FROM contract_events WHERE out_contract_code <> 'ops-rep-canary'`); n != 2*len(signCodes)+2*len(expireCodes) {
		t.Errorf("%d history rows in all, want %d", n, 2*len(signCodes)+2*len(expireCodes))
	}
	if n := s.count(`SELECT count(*) FROM wechat_notifications WHERE delivery_count <> 5`); n != 0 {
		t.Errorf("%d inbox rows whose delivery_count is not 5", n)
	}
	t.Logf("notification deliveries per process: %v", hits)
}

func TestOpsSweepExpiresExactlyTheThousandDueAmong100kSessions(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO contracts (product, channel, plan_id, state, session_id,
			session_expires_at, out_contract_code)
		SELECT 'papay', 'app', 1, 'session_issued', 'sess-' || g,
			CASE WHEN g <= 1000 THEN now() - interval '1 minute' ELSE now() + interval '1 hour' END,
			'bulk-' || g
		FROM generate_series(1, 100000) AS g`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `ANALYZE contracts`); err != nil {
		t.Fatal(err)
	}
	count := func(sql string) int {
		t.Helper()
		var n int
		if err := db.Pool.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return n
	}

	// The sweep's query uses the partial index.
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `PREPARE ops_due(timestamptz, int) AS `+store.DueSessionsSQL); err != nil {
		conn.Release()
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `EXPLAIN EXECUTE ops_due(now(), 500)`)
	if err != nil {
		conn.Release()
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	rows.Close()
	_, _ = conn.Exec(ctx, `DEALLOCATE ops_due`)
	conn.Release()
	if !strings.Contains(strings.Join(plan, "\n"), "contracts_session_expiry") {
		t.Errorf("the due-sessions plan does not use contracts_session_expiry:\n%s", strings.Join(plan, "\n"))
	}

	svc := lifecycle.New(store.New(db.Pool), nil, nil, lifecycle.Options{
		LeaseTTL: config.DefaultLeaseTTL, PresignWait: config.DefaultLeaseWait, ReconcileMinAge: config.DefaultReconcileAfter,
		ReconcileFirstGap: config.DefaultReconcileAfter, ReconcileLookBack: config.DefaultReconcileLookBack,
		HealWindow: config.DefaultHealWindow, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	start := time.Now()
	n, err := svc.Sweep(ctx)
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	t.Logf("swept %d in %s", n, time.Since(start).Round(time.Millisecond))
	if n != 1000 {
		t.Errorf("sweep says it expired %d, want 1000", n)
	}
	dueIDs := `SELECT 'bulk-' || g FROM generate_series(1, 1000) AS g`
	if got := count(`SELECT count(*) FROM contracts WHERE state = 'expired' AND out_contract_code IN (` + dueIDs + `)`); got != 1000 {
		t.Errorf("%d of the 1000 due sessions expired", got)
	}
	if got := count(`SELECT count(*) FROM contracts WHERE state = 'expired'`); got != 1000 {
		t.Errorf("%d contracts expired in all, want 1000", got)
	}
	if got := count(`SELECT count(*) FROM contracts WHERE state = 'session_issued' AND version = 1 AND expired_at IS NULL`); got != 99000 {
		t.Errorf("%d sessions untouched, want 99000", got)
	}
	if got := count(`SELECT count(*) FROM contract_events WHERE event = 'expire' AND source = 'sweeper'
		AND from_state = 'session_issued' AND to_state = 'expired' AND out_contract_code IN (` + dueIDs + `)`); got != 1000 {
		t.Errorf("%d expire history rows for the due sessions, want 1000", got)
	}
	if got := count(`SELECT count(*) FROM contract_events`); got != 1000 {
		t.Errorf("%d history rows in all, want 1000", got)
	}
	if got := count(`SELECT count(DISTINCT contract_pk) FROM contract_events`); got != 1000 {
		t.Errorf("history rows cover %d contracts, want 1000 distinct", got)
	}
	// A second sweep finds nothing left.
	if n, err := svc.Sweep(ctx); err != nil || n != 0 {
		t.Errorf("second sweep: %d, %v; want 0, nil", n, err)
	}
}

// opsFeedPagesEveryRowExactlyOnce pre-signs five contracts and pages
// through GET /v1/events two at a time: every history row of the schema
// comes once, in the feed's order, each with its event_id, never lost. A
// cursor whose row no longer exists (as after a failover that lost it)
// answers lost, with the position it named and a cursor that resumes at
// the last row before it.
func opsFeedPagesEveryRowExactlyOnce(t *testing.T, s *stack) {
	for i := range 5 {
		ntPreSign(t, s, fmt.Sprintf("ops-feed-%d", i))
	}
	var want []int64
	rows, err := s.DB.Pool.Query(t.Context(), `SELECT id FROM contract_events ORDER BY timeline, xid, id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	rows.Close()
	if len(want) < 5 {
		t.Fatalf("only %d history rows to page through", len(want))
	}
	// A row is served once every transaction older than its own has
	// ended, anywhere in the cluster (other tests run beside this
	// one): an empty page means "nothing more yet", so ask again.
	var got []int64
	after := ""
	for deadline := time.Now().Add(time.Minute); len(got) < len(want); {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute the feed gave %v, want %v", got, want)
		}
		r := s.do(http.MethodGet, "/v1/events?limit=2&after="+url.QueryEscape(after), opsToken, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("feed: %d %s", r.Status, r.Body)
		}
		var f struct {
			Items []struct {
				ID      int64  `json:"id"`
				EventID string `json:"event_id"`
			} `json:"items"`
			NextCursor string `json:"next_cursor"`
			Lost       *bool  `json:"lost"`
		}
		r.JSON(t, &f)
		if len(f.Items) > 2 {
			t.Fatalf("page of %d items with limit=2", len(f.Items))
		}
		if f.Lost == nil || *f.Lost {
			t.Fatalf("feed page says lost %v, want false: %s", f.Lost, r.Body)
		}
		for _, it := range f.Items {
			if len(it.EventID) != 36 {
				t.Fatalf("row %d has event_id %q", it.ID, it.EventID)
			}
		}
		if len(f.Items) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		for _, it := range f.Items {
			got = append(got, it.ID)
		}
		after = f.NextCursor
	}
	if !slices.Equal(got, want) {
		t.Fatalf("feed gave %v, want every row once in order %v", got, want)
	}

	// The last row's position, naming an event id no row has: lost.
	var tl, xid int64
	if err := s.DB.Pool.QueryRow(t.Context(), `SELECT timeline, xid FROM contract_events WHERE id = $1`, want[len(want)-1]).Scan(&tl, &xid); err != nil {
		t.Fatal(err)
	}
	const gone = "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a"
	lostCursor := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "f2:%d:%d:%d:%s", tl, xid, want[len(want)-1], gone))
	r := s.do(http.MethodGet, "/v1/events?after="+url.QueryEscape(lostCursor), opsToken, nil)
	var lost struct {
		Items        []json.RawMessage `json:"items"`
		NextCursor   string            `json:"next_cursor"`
		Lost         bool              `json:"lost"`
		LostPosition struct {
			Timeline int64  `json:"timeline"`
			XID      int64  `json:"xid"`
			ID       int64  `json:"id"`
			EventID  string `json:"event_id"`
		} `json:"lost_position"`
	}
	if r.Status != http.StatusOK {
		t.Fatalf("lost cursor: %d %s", r.Status, r.Body)
	}
	r.JSON(t, &lost)
	if !lost.Lost || len(lost.Items) != 0 || lost.LostPosition.EventID != gone || lost.LostPosition.ID != want[len(want)-1] ||
		lost.LostPosition.Timeline != tl || lost.LostPosition.XID != xid {
		t.Fatalf("lost cursor answered %s", r.Body)
	}
	// Resuming serves every row after the last one before the lost
	// position: here, the row that holds that position itself.
	r = s.do(http.MethodGet, "/v1/events?after="+url.QueryEscape(lost.NextCursor), opsToken, nil)
	var resumed struct {
		Items []struct {
			ID int64 `json:"id"`
		} `json:"items"`
	}
	r.JSON(t, &resumed)
	if r.Status != http.StatusOK || len(resumed.Items) != 1 || resumed.Items[0].ID != want[len(want)-1] {
		t.Fatalf("after resuming: %d %s, want the last row %d", r.Status, r.Body, want[len(want)-1])
	}
}

func TestOpsSweeperInTheServerExpiresTheDueSessions(t *testing.T) {
	t.Parallel()
	opsSweeperExpiresTheDueSessions(t, startStack(t, stackOptions{Env: map[string]string{"CONTRACTD_SWEEP_INTERVAL": "100ms"}}))
}

// opsSweeperExpiresTheDueSessions pre-signs 20 contracts, makes 10 of
// their sessions due, and waits for the server's own sweeper (the stack
// runs it every 100ms) to expire exactly those 10, each with one expire
// history row from the sweeper.
func opsSweeperExpiresTheDueSessions(t *testing.T, s *stack) {
	t.Helper()
	for i := range 20 {
		ntPreSign(t, s, fmt.Sprintf("ops-sweep-%02d", i))
	}
	if _, err := s.DB.Pool.Exec(t.Context(), `UPDATE contracts SET session_expires_at = now() - interval '1 second'
		WHERE out_contract_code IN (SELECT format('ops-sweep-%s', to_char(g, 'FM00')) FROM generate_series(0, 9) g)`); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the 10 due sessions expired", func() bool {
		return s.count(`SELECT count(*) FROM contracts WHERE state = 'expired'`) == 10
	})
	if n := s.count(`SELECT count(*) FROM contracts WHERE state = 'expired' AND out_contract_code < 'ops-sweep-10'`); n != 10 {
		t.Errorf("%d of the due sessions expired, want all 10", n)
	}
	if n := s.count(`SELECT count(*) FROM contracts WHERE state = 'session_issued' AND out_contract_code >= 'ops-sweep-10'`); n != 10 {
		t.Errorf("%d sessions not due still open, want 10", n)
	}
	if n := s.count(`SELECT count(*) FROM contract_events WHERE event = 'expire' AND source = 'sweeper'`); n != 10 {
		t.Errorf("%d expire history rows from the sweeper, want 10", n)
	}
}
