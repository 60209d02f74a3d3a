package main

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// dbHooks lets a test act when the simulator receives a pre-sign and when
// it has answered it.
type dbHooks struct {
	mu                sync.Mutex
	arrived, answered func()
}

func (h *dbHooks) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "pre-entrust-sign") {
			next.ServeHTTP(w, r)
			return
		}
		h.mu.Lock()
		arrived, answered := h.arrived, h.answered
		h.mu.Unlock()
		if arrived != nil {
			arrived()
		}
		next.ServeHTTP(w, r)
		if answered != nil {
			answered()
		}
	})
}

func (h *dbHooks) set(arrived, answered func()) {
	h.mu.Lock()
	h.arrived, h.answered = arrived, answered
	h.mu.Unlock()
}

// The database goes away while WeChat opens a session. Either it comes
// back soon enough for the session to be saved, or the answer is a 503 that
// says exactly what was written: the lease, and not the session.
func TestFaultPreSignWhileTheDatabaseGoesAway(t *testing.T) {
	t.Parallel()
	t.Run("back within the save retry: the session is saved", func(t *testing.T) {
		t.Parallel()
		proxy := ntStartDBProxy(t)
		hooks := &dbHooks{}
		s := startStack(t, stackOptions{DatabaseURL: proxy.URL, WrapSim: hooks.wrap})
		hooks.set(proxy.Cut, func() {
			go func() { time.Sleep(300 * time.Millisecond); proxy.Restore(t) }()
		})
		r := s.do(http.MethodPost, "/v1/contracts/pre-sign", appToken, presignPapay("app", "db-short"))
		if r.Status != http.StatusCreated {
			t.Fatalf("pre-sign across a short outage: %d %s", r.Status, r.Body)
		}
		if n := presignCalls(s); n != 1 {
			t.Fatalf("%d WeChat pre-sign calls, want 1", n)
		}
		if h := presignHistory(s, "", "db-short"); len(h) != 1 || h[0].Event != "issue_session" {
			t.Fatalf("history %+v", h)
		}
	})
	t.Run("gone for longer: 503 says what was written, and a retry opens a session", func(t *testing.T) {
		t.Parallel()
		proxy := ntStartDBProxy(t)
		hooks := &dbHooks{}
		s := startStack(t, stackOptions{DatabaseURL: proxy.URL, WrapSim: hooks.wrap,
			Env: map[string]string{"CONTRACTD_LEASE_TTL": "1s", "CONTRACTD_LEASE_WAIT": "3s"}})
		hooks.set(proxy.Cut, nil)
		body := presignPapay("app", "db-long")
		r := s.do(http.MethodPost, "/v1/contracts/pre-sign", appToken, body)
		e := presignExpectError(t, r, http.StatusServiceUnavailable, "UNAVAILABLE")
		if e.Detail["session_opened"] != true || e.Detail["session_saved"] != false || r.Header.Get("Retry-After") == "" {
			t.Fatalf("the 503 does not say what was written: %s (Retry-After %q)", r.Body, r.Header.Get("Retry-After"))
		}
		// What it says is true: the lease, taken before the call, is the
		// only thing written; no session, no history.
		if n := s.count(`SELECT count(*) FROM contracts WHERE out_contract_code = 'db-long' AND state = 'created'
			AND claim_token <> '' AND session_id = ''`); n != 1 {
			t.Fatalf("stored contract is not the leased, session-less one the answer describes")
		}
		if n := s.count(`SELECT count(*) FROM contract_events`); n != 0 {
			t.Fatalf("%d history rows written", n)
		}

		hooks.set(nil, nil)
		proxy.Restore(t)
		var final response
		eventually(t, 30*time.Second, "an identical retry opens a session", func() bool {
			final = s.do(http.MethodPost, "/v1/contracts/pre-sign", appToken, body)
			return final.Status == http.StatusCreated
		})
		if n := presignCalls(s); n != 2 {
			t.Fatalf("%d WeChat pre-sign calls, want 2 (the unsaved session and the retry's)", n)
		}
		h := presignHistory(s, "", "db-long")
		if len(h) != 1 || h[0].Event != "issue_session" {
			t.Fatalf("history %+v", h)
		}
	})
}
