package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contractd/contractd/wechatpaysim"
)

// killProcess SIGKILLs a contractd process and waits until it is gone.
func killProcess(t *testing.T, p *cliProcess) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil { // SIGKILL: no graceful anything
		t.Fatalf("SIGKILL: %v", err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the killed process did not exit")
	}
}

// contractd is SIGKILLed one second into a pre-sign's three-second WeChat
// call, then restarted. The app server's identical retry must answer the
// session, or IN_PROGRESS with Retry-After, within CONTRACTD_LEASE_WAIT
// plus a margin (here: the HTTP client's generous timeout stands for the
// app server's own), and a session must follow.
func TestFaultKilledMidPreSignRetryAnswersWithinTheWaitBound(t *testing.T) {
	t.Parallel()
	bin := cliBuild(t)
	arrived := make(chan struct{}, 8)
	hooks := &dbHooks{}
	hooks.set(func() { arrived <- struct{}{} }, nil)
	s := startStack(t, stackOptions{WrapSim: hooks.wrap})
	env := maps.Clone(s.Env)
	env["CONTRACTD_LEASE_WAIT"] = "1s"
	env["CONTRACTD_LEASE_TTL"] = "2s"
	s.Sim.SetFaults(wechatpaysim.Faults{LatencyMS: 3000, PathContains: "pre-entrust-sign"})
	first := cliStartServe(t, bin, env)

	body := presignPapay("app", "kill-presign")
	firstErr := make(chan error, 1)
	go func() {
		r, err := send(t, first.URL, request{Method: http.MethodPost, Path: "/v1/contracts/pre-sign", Token: appToken, Body: body})
		if err == nil {
			err = fmt.Errorf("the killed process answered %d %s", r.Status, r.Body)
			if r.Status == 0 {
				err = nil
			}
		}
		firstErr <- err
	}()
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the pre-sign never reached WeChat")
	}
	time.Sleep(time.Second) // one second into the WeChat call
	killProcess(t, first)
	if err := <-firstErr; err == nil {
		t.Fatal("the request to the killed process got an answer")
	}
	s.Sim.SetFaults(wechatpaysim.Faults{})
	hooks.set(nil, nil)

	second := cliStartServe(t, bin, env)
	client := &http.Client{Timeout: 20 * time.Second} // generous: an app server's timeout is usually 10s
	var (
		answered response
		waits    []time.Duration
	)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		start := time.Now()
		r, err := send(t, second.URL, request{Method: http.MethodPost, Path: "/v1/contracts/pre-sign", Token: appToken, Body: body, Client: client})
		if err != nil {
			t.Fatalf("the retry got no answer within the client's timeout: %v", err)
		}
		waits = append(waits, time.Since(start))
		answered = r
		if answered.Status == http.StatusCreated || answered.Status == http.StatusOK {
			break
		}
		e := presignExpectError(t, answered, http.StatusConflict, "IN_PROGRESS")
		after, err := strconv.Atoi(answered.Header.Get("Retry-After"))
		if err != nil || after < 1 {
			t.Fatalf("IN_PROGRESS without a Retry-After of whole seconds: %q (%s)", answered.Header.Get("Retry-After"), e.Message)
		}
		if time.Now().After(deadline) {
			t.Fatal("no session within two minutes of retries")
		}
		time.Sleep(time.Duration(after) * time.Second)
	}
	t.Logf("measured: after a SIGKILL mid-pre-sign (lease 2s, wait bound 1s) the retries answered in %v, the last with %d", waits, answered.Status)

	var got struct {
		Launch json.RawMessage `json:"launch"`
	}
	answered.JSON(t, &got)
	var stored string
	if err := s.DB.Pool.QueryRow(t.Context(), `SELECT launch::text FROM contracts WHERE out_contract_code = 'kill-presign'
		AND state = 'session_issued' AND claim_token = ''`).Scan(&stored); err != nil {
		t.Fatalf("the contract is not session_issued with its lease released: %v", err)
	}
	var a, b any
	_ = json.Unmarshal(got.Launch, &a)
	_ = json.Unmarshal([]byte(stored), &b)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("answered launch %s, stored %s", got.Launch, stored)
	}
	if n := s.count(`SELECT count(*) FROM contracts`); n != 1 {
		t.Fatalf("%d contracts, want 1", n)
	}
	if n := s.count(`SELECT count(*) FROM contract_events WHERE event = 'issue_session'`); n != 1 {
		t.Fatalf("%d issue_session rows, want 1", n)
	}
	sessions := presignSimSessions(s, "", "kill-presign")
	if len(sessions) < 1 || len(sessions) > 2 {
		t.Fatalf("WeChat holds %d sessions for the code, want 1 or 2", len(sessions))
	}
	t.Logf("WeChat holds %d session(s) for the code (the killed holder's, when WeChat finished opening it, cannot be known)", len(sessions))
}

// killingFront stands where WeChat delivers notifications: it forwards to
// the current contractd process and, on the delivery it is told to, kills
// that process while the delivery is being applied; until a new process is
// set, deliveries answer 502 so that WeChat retries them.
type killingFront struct {
	mu      sync.Mutex
	target  string
	killAt  int
	seen    atomic.Int64
	kill    func()
	client  *http.Client
	refused atomic.Int64
}

func (f *killingFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := int(f.seen.Add(1))
	f.mu.Lock()
	target, kill := f.target, f.kill
	if n == f.killAt {
		f.kill = nil
	}
	f.mu.Unlock()
	if target == "" {
		f.refused.Add(1)
		http.Error(w, `{"code":"FAIL","message":"down"}`, http.StatusBadGateway)
		return
	}
	body, _ := io.ReadAll(r.Body)
	req, _ := http.NewRequest(r.Method, target+r.URL.RequestURI(), strings.NewReader(string(body)))
	req.Header = r.Header.Clone()
	if n == f.killAt && kill != nil {
		go kill() // the process dies while it handles this very delivery
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.refused.Add(1)
		http.Error(w, `{"code":"FAIL","message":"down"}`, http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(raw)
}

func (f *killingFront) set(target string) {
	f.mu.Lock()
	f.target = target
	f.mu.Unlock()
}

// contractd is SIGKILLed while it applies a stream of sign notifications,
// then restarted: WeChat's retries land every one exactly once.
func TestFaultKilledMidNotificationRetryLandsOnce(t *testing.T) {
	t.Parallel()
	bin := cliBuild(t)
	front := &killingFront{killAt: 5, client: &http.Client{Timeout: 10 * time.Second}}
	frontSrv := httptest.NewServer(front)
	t.Cleanup(frontSrv.Close)
	// Scaled by 0.01, WeChat's schedule (15s, 15s, 30s, 3m, 30m, ...) retries
	// after 0.15s, 0.3s, 0.6s, 2.4s, 20.4s: it spans a restart.
	s := startStack(t, stackOptions{NotifyTarget: frontSrv.URL, SimTimeScale: 0.01})
	env := maps.Clone(s.Env)
	first := cliStartServe(t, bin, env)
	var killed atomic.Bool
	front.kill = func() {
		front.set("")
		killProcess(t, first)
		killed.Store(true)
	}
	front.set(first.URL)

	const n = 20
	code := func(i int) string { return fmt.Sprintf("kill-notify-%02d", i) }
	for i := range n {
		ntPreSignAt(t, first.URL, code(i), 123)
	}
	for i := range n {
		if _, err := s.Sim.Sign(t.Context(), wechatpaysim.SignRequest{OutContractCode: code(i)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 60*time.Second, "the process killed mid-delivery", killed.Load)
	second := cliStartServe(t, bin, env)
	front.set(second.URL)

	eventually(t, 2*time.Minute, "every contract signed and every delivery acknowledged", func() bool {
		if s.count(`SELECT count(*) FROM contracts WHERE state = 'signed'`) != n {
			return false
		}
		for i := range n {
			for _, d := range ntDeliveries(s, code(i)) {
				if !d.Done {
					return false
				}
			}
		}
		return true
	})
	if got := s.count(`SELECT count(*) FROM contract_events WHERE event = 'sign'`); got != n {
		t.Fatalf("%d sign history rows for %d contracts", got, n)
	}
	for i := range n {
		if got := s.count(`SELECT count(*) FROM contract_events WHERE event = 'sign' AND out_contract_code = $1`, code(i)); got != 1 {
			t.Fatalf("%s: %d sign rows", code(i), got)
		}
	}
	if got := s.count(`SELECT count(*) FROM wechat_notifications`); got != n {
		t.Fatalf("%d inbox rows, want %d", got, n)
	}
	retried := 0
	for i := range n {
		for _, d := range ntDeliveries(s, code(i)) {
			if len(d.Attempts) > 1 {
				retried++
			}
		}
	}
	if retried == 0 || front.refused.Load() == 0 {
		t.Fatalf("no delivery was refused or retried (%d refused): the kill did not hit a delivery", front.refused.Load())
	}
	t.Logf("%d deliveries needed more than one attempt; %d attempts found contractd down", retried, front.refused.Load())
}
