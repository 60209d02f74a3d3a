package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/wechatpaysim"
)

// logBuffer collects a server's log lines for a test to read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the JSON log lines whose msg is msg.
func (b *logBuffer) lines(msg string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(b.buf.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startReplica runs a second contractd on the stack's database and
// simulator (the same serve function), until the test ends.
func startReplica(t *testing.T, s *stack, logOut io.Writer) string {
	t.Helper()
	return startReplicaWith(t, s, logOut, nil)
}

// startReplicaWith runs a second contractd as startReplica does, with the
// stack's environment changed by overrides (for example a token list
// without a revoked token, as after a restart).
func startReplicaWith(t *testing.T, s *stack, logOut io.Writer, overrides map[string]string) string {
	t.Helper()
	env := maps.Clone(s.Env)
	maps.Copy(env, overrides)
	env["CONTRACTD_HTTP_ADDR"] = "127.0.0.1:0"
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	listening, done := make(chan string, 1), make(chan error, 1)
	go func() { done <- serve(ctx, cfg, false, newLogger(cfg.LogLevel, logOut), nil, listening) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-listening:
		return "http://" + a
	case err := <-done:
		t.Fatalf("replica: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("replica did not start")
	}
	return ""
}

// consoleClient is a browser-like client of one console: it keeps the
// cookies it is given (by hand, because the stack's cookies are Secure and
// the stack speaks plain http on loopback) and follows no redirects.
type consoleClient struct {
	t       testing.TB
	base    string
	cookies map[string]string
}

func newConsoleClient(t testing.TB, base string) *consoleClient {
	return &consoleClient{t: t, base: base, cookies: map[string]string{}}
}

type consoleAnswer struct {
	Status int
	Header http.Header
	Body   string
}

func (c *consoleClient) do(method, path string, form url.Values) consoleAnswer {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range c.cookies {
		req.AddCookie(&http.Cookie{Name: k, Value: v})
	}
	client := &http.Client{Timeout: 60 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, ck := range resp.Cookies() {
		if ck.MaxAge < 0 {
			delete(c.cookies, ck.Name)
		} else {
			c.cookies[ck.Name] = ck.Value
		}
	}
	return consoleAnswer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// csrf is the CSRF token of the page's forms.
func csrf(t testing.TB, page consoleAnswer) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page.Body)
	if m == nil {
		t.Fatalf("no CSRF field on the page: %d %.300s", page.Status, page.Body)
	}
	return m[1]
}

// signIn posts token on the sign-in form and returns the answer.
func (c *consoleClient) signIn(token string) consoleAnswer {
	c.t.Helper()
	p := c.do(http.MethodGet, "/ops/signin", nil)
	return c.do(http.MethodPost, "/ops/signin", url.Values{"csrf": {csrf(c.t, p)}, "token": {token}})
}

func TestConsoleSessionsSignInAndSecurity(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	s := startStack(t, stackOptions{LogOut: logs, Env: map[string]string{
		"CONTRACTD_API_TOKENS": "app:" + appToken + ",ops:" + opsToken + ",ops:alice:" + aliceToken,
		"CONTRACTD_LOG_LEVEL":  "info",
	}})
	other := startReplica(t, s, logs)
	sessions := func() int { return s.count(`SELECT count(*) FROM console_sessions`) }

	t.Run("pages send CSP, no framing, and strict cookies", func(t *testing.T) { consoleSignInWithStrictCookies(t, s) })

	t.Run("a sign-in without its CSRF token is refused", func(t *testing.T) {
		before := sessions()
		c := newConsoleClient(t, s.URL)
		r := c.do(http.MethodPost, "/ops/signin", url.Values{"token": {aliceToken}})
		if r.Status != http.StatusForbidden || sessions() != before {
			t.Fatalf("sign-in without CSRF: %d, sessions %d -> %d", r.Status, before, sessions())
		}
	})

	t.Run("one session serves every replica and signing out ends it everywhere", func(t *testing.T) {
		a := newConsoleClient(t, s.URL)
		if r := a.signIn(aliceToken); r.Status != http.StatusSeeOther {
			t.Fatalf("sign-in: %d", r.Status)
		}
		b := newConsoleClient(t, other)
		maps.Copy(b.cookies, a.cookies)
		page := b.do(http.MethodGet, "/ops/", nil)
		if page.Status != http.StatusOK || !strings.Contains(page.Body, "Signed in as alice") {
			t.Fatalf("the other replica does not know the session: %d", page.Status)
		}
		if r := b.do(http.MethodPost, "/ops/signout", url.Values{"csrf": {csrf(t, page)}}); r.Status != http.StatusSeeOther {
			t.Fatalf("sign-out: %d", r.Status)
		}
		r := a.do(http.MethodGet, "/ops/", nil)
		if r.Status != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/ops/signin") {
			t.Fatalf("after sign-out on the other replica: %d %s", r.Status, r.Header.Get("Location"))
		}
	})

	t.Run("a lapsed session leads back to sign-in", func(t *testing.T) {
		c := newConsoleClient(t, s.URL)
		if r := c.signIn(aliceToken); r.Status != http.StatusSeeOther {
			t.Fatalf("sign-in: %d", r.Status)
		}
		if _, err := s.DB.Pool.Exec(context.Background(), `UPDATE console_sessions SET expires_at = now() - interval '1 second'`); err != nil {
			t.Fatal(err)
		}
		r := c.do(http.MethodGet, "/ops/contracts", nil)
		if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/ops/signin?expired=1" {
			t.Fatalf("lapsed session: %d %s", r.Status, r.Header.Get("Location"))
		}
		if p := c.do(http.MethodGet, "/ops/signin?expired=1", nil); !strings.Contains(p.Body, "session has ended") {
			t.Fatal("the sign-in page does not say the session ended")
		}
	})

	t.Run("failed sign-ins are slowed down across replicas and logged without the token", func(t *testing.T) {
		const bad = "not-a-token-at-all-7f3a"
		for i := range 5 {
			base := s.URL
			if i%2 == 1 {
				base = other
			}
			r := newConsoleClient(t, base).signIn(bad)
			if r.Status != http.StatusUnauthorized {
				t.Fatalf("attempt %d with an unknown token: %d", i+1, r.Status)
			}
		}
		// The sixth attempt, even with a good token and on either replica, is refused.
		for _, base := range []string{other, s.URL} {
			r := newConsoleClient(t, base).signIn(aliceToken)
			if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
				t.Fatalf("after 5 failures, sign-in at %s: %d", base, r.Status)
			}
		}
		if strings.Contains(logs.String(), bad) || strings.Contains(logs.String(), aliceToken) {
			t.Fatal("a token reached the logs")
		}
		refused := logs.lines("console sign-in refused")
		if len(refused) != 5 || refused[0]["address"] != "127.0.0.1" || refused[0]["reason"] != "unknown token" {
			t.Fatalf("refusals logged: %v", refused)
		}
		// Once the window has passed, the address may sign in again.
		if _, err := s.DB.Pool.Exec(context.Background(), `UPDATE auth_failures SET window_start = now() - interval '1 hour'`); err != nil {
			t.Fatal(err)
		}
		if r := newConsoleClient(t, other).signIn(aliceToken); r.Status != http.StatusSeeOther {
			t.Fatalf("after the window: %d", r.Status)
		}
	})

	t.Run("an app token cannot sign in", func(t *testing.T) {
		before := sessions()
		r := newConsoleClient(t, s.URL).signIn(appToken)
		if r.Status != http.StatusForbidden || !strings.Contains(r.Body, "an ops token is needed") || sessions() != before {
			t.Fatalf("app token: %d, sessions %d -> %d", r.Status, before, sessions())
		}
		if _, err := s.DB.Pool.Exec(context.Background(), `DELETE FROM auth_failures`); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("the overview's figures can be read now", func(t *testing.T) {
		c := newConsoleClient(t, s.URL)
		if r := c.signIn(aliceToken); r.Status != http.StatusSeeOther {
			t.Fatalf("sign-in: %d", r.Status)
		}
		count := func(path string) string {
			p := c.do(http.MethodGet, path, nil)
			m := regexp.MustCompile(`id="count-session_issued">(\d+)<`).FindStringSubmatch(p.Body)
			if p.Status != http.StatusOK || m == nil || !strings.Contains(p.Body, "Figures read at") {
				t.Fatalf("overview: %d", p.Status)
			}
			return m[1]
		}
		_ = count("/ops/")
		ntPreSign(t, s, "console-e2e-fresh")
		want := s.count(`SELECT count(*) FROM contracts WHERE state = 'session_issued'`)
		if got := count("/ops/?fresh=1"); got != strconv.Itoa(want) {
			t.Fatalf("fresh overview shows %s open sessions, the database has %d", got, want)
		}
	})

	t.Run("search, reveal, CSV export and sync", func(t *testing.T) {
		const code, open = "console-e2e-signed", "console-e2e-open"
		ct := opsSigned(t, s, code)
		ntPreSign(t, s, open)
		c := newConsoleClient(t, s.URL)
		if r := c.signIn(aliceToken); r.Status != http.StatusSeeOther {
			t.Fatalf("sign-in: %d", r.Status)
		}
		contractPage := "/ops/contract?code=" + code
		for _, q := range []string{code, ct.ContractID, ct.OpenID} {
			r := c.do(http.MethodGet, "/ops/search?q="+url.QueryEscape(q), nil)
			if r.Status != http.StatusSeeOther || r.Header.Get("Location") != contractPage {
				t.Fatalf("search %q: %d %s", q, r.Status, r.Header.Get("Location"))
			}
		}
		if r := c.do(http.MethodGet, "/ops/search?q=nobody-has-this", nil); r.Status != http.StatusOK || !strings.Contains(r.Body, "No contracts match") {
			t.Fatalf("search without a match: %d", r.Status)
		}
		if r := c.do(http.MethodGet, "/ops/search?q=%00bad", nil); r.Status != http.StatusBadRequest {
			t.Fatalf("search with a NUL: %d", r.Status)
		}
		page := c.do(http.MethodGet, contractPage, nil)
		if strings.Contains(page.Body, ct.OpenID) {
			t.Fatal("the openid is shown before it is revealed")
		}
		token := csrf(t, page)
		rev := c.do(http.MethodPost, "/ops/contract/reveal", url.Values{"csrf": {token}, "code": {code}})
		if rev.Status != http.StatusOK || !strings.Contains(rev.Body, ct.OpenID) {
			t.Fatalf("reveal: %d", rev.Status)
		}
		revealed := logs.lines("console revealed an openid")
		if len(revealed) != 1 || revealed[0]["actor"] != "alice" || revealed[0]["contract"] != code {
			t.Fatalf("reveal logged as %v", revealed)
		}
		if strings.Contains(logs.String(), ct.OpenID) {
			t.Fatal("the openid reached the logs")
		}

		csv := c.do(http.MethodGet, "/ops/contracts.csv?state=signed", nil)
		lines := strings.Split(strings.TrimSpace(csv.Body), "\n")
		if csv.Status != http.StatusOK || !strings.HasPrefix(csv.Header.Get("Content-Type"), "text/csv") ||
			len(lines) != 1+s.count(`SELECT count(*) FROM contracts WHERE state = 'signed'`) || strings.Contains(csv.Body, ct.OpenID) {
			t.Fatalf("CSV export: %d %q", csv.Status, csv.Body)
		}

		// Sync of a contract whose notifications were dropped signs it,
		// recorded as alice's.
		const dropped = "console-e2e-dropped"
		ntPreSign(t, s, dropped)
		s.Sim.SetFaults(wechatpaysim.Faults{DropDeliveries: true})
		ntSign(t, s, dropped)
		r := c.do(http.MethodPost, "/ops/contract/sync", url.Values{"csrf": {token}, "code": {dropped}})
		s.Sim.SetFaults(wechatpaysim.Faults{})
		if r.Status != http.StatusSeeOther || ntState(t, s, dropped) != "signed" {
			t.Fatalf("sync: %d, state %s", r.Status, ntState(t, s, dropped))
		}
		var details []byte
		if err := s.DB.Pool.QueryRow(context.Background(), `SELECT details FROM contract_events
			WHERE out_contract_code = $1 AND event = 'sign'`, dropped).Scan(&details); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(details), `"actor": "alice"`) {
			t.Fatalf("sync history details %s lack the actor", details)
		}
		// Terminate needs a note, then a confirmation.
		if r := c.do(http.MethodPost, "/ops/contract/terminate", url.Values{"csrf": {token}, "code": {code}, "confirm": {"yes"}}); r.Status != http.StatusBadRequest {
			t.Fatalf("terminate without a note: %d", r.Status)
		}
		if r := c.do(http.MethodPost, "/ops/contract/terminate", url.Values{"csrf": {token}, "code": {code}, "note": {"asked"}}); r.Status != http.StatusOK ||
			!strings.Contains(r.Body, "confirm-terminate") || ntState(t, s, code) != "signed" {
			t.Fatalf("terminate's first step: %d, state %s", r.Status, ntState(t, s, code))
		}
		// Terminating an open session is refused as the API refuses it.
		if r := c.do(http.MethodPost, "/ops/contract/terminate", url.Values{"csrf": {token}, "code": {open}, "note": {"asked"}, "confirm": {"yes"}}); r.Status != http.StatusConflict ||
			!strings.Contains(r.Body, "only signed contracts") {
			t.Fatalf("terminate of an open session: %d", r.Status)
		}
	})
}

// TestTokenHoldersAreActorsInTheAPI checks that a named token's holder is
// recorded in the history of what it does through the API, and that an
// unnamed token records none, as before.
func TestTokenHoldersAreActorsInTheAPI(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	s := startStack(t, stackOptions{LogOut: logs, Env: map[string]string{
		"CONTRACTD_API_TOKENS": "app:" + appToken + ",ops:" + opsToken + ",ops:alice:" + aliceToken,
		"CONTRACTD_LOG_LEVEL":  "info",
	}})
	cases := []struct {
		code, token, actor string
	}{
		{"actor-alice", aliceToken, "alice"},
		{"actor-unnamed", opsToken, ""},
	}
	for _, tc := range cases {
		opsSigned(t, s, tc.code)
		r := s.do(http.MethodPost, "/v1/contracts/"+tc.code+"/terminate", tc.token, map[string]string{"note": "customer asked"})
		if r.Status != http.StatusOK {
			t.Fatalf("terminate %s: %d %s", tc.code, r.Status, r.Body)
		}
		var details map[string]any
		var raw []byte
		if err := s.DB.Pool.QueryRow(context.Background(), `SELECT details FROM contract_events
			WHERE out_contract_code = $1 AND event = 'terminate'`, tc.code).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &details); err != nil {
			t.Fatal(err)
		}
		if got, _ := details["actor"].(string); got != tc.actor || details["note"] != "customer asked" {
			t.Fatalf("%s: terminate details %s, want actor %q", tc.code, raw, tc.actor)
		}
	}
	var aliceLines int
	for _, l := range logs.lines("request") {
		if l["actor"] == "alice" {
			aliceLines++
		}
	}
	if aliceLines == 0 {
		t.Fatal("no request log line names alice")
	}
}

// consoleSignInWithStrictCookies signs alice in to the console (the stack
// must know aliceToken): the pages' security headers, the session cookie's
// attributes, and only the session id's hash in the database.
func consoleSignInWithStrictCookies(t *testing.T, s *stack) {
	c := newConsoleClient(t, s.URL)
	p := c.do(http.MethodGet, "/ops/signin", nil)
	if p.Status != http.StatusOK || !strings.Contains(p.Body, "<title>Sign in") {
		t.Fatalf("sign-in page: %d %.200s", p.Status, p.Body)
	}
	csp := p.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "script-src 'self'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Fatalf("CSP %q lacks %q", csp, want)
		}
	}
	if p.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("X-Frame-Options %q", p.Header.Get("X-Frame-Options"))
	}
	r := c.do(http.MethodPost, "/ops/signin", url.Values{"csrf": {csrf(t, p)}, "token": {aliceToken}})
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/ops/" {
		t.Fatalf("sign-in: %d %s", r.Status, r.Header.Get("Location"))
	}
	var sc string
	for _, h := range r.Header.Values("Set-Cookie") {
		if strings.HasPrefix(h, "contractd_console=") {
			sc = h
		}
	}
	for _, want := range []string{"HttpOnly", "SameSite=Strict", "Secure", "Path=/ops/", "Max-Age=28800"} {
		if !strings.Contains(sc, want) {
			t.Fatalf("session cookie %q lacks %s", sc, want)
		}
	}
	// The cookie holds only the random id; the database only its hash.
	id := c.cookies["contractd_console"]
	if len(id) != 64 || s.count(`SELECT count(*) FROM console_sessions WHERE id_hash = $1 OR csrf_token = $1`, id) != 0 {
		t.Fatalf("session id %q is stored as is", id)
	}
	if n := s.count(`SELECT count(*) FROM console_sessions WHERE actor = 'alice' AND expires_at > now() + interval '7 hours'`); n != 1 {
		t.Fatalf("%d sessions of alice lasting 8h", n)
	}
	o := c.do(http.MethodGet, "/ops/nowhere", nil)
	if o.Status != http.StatusNotFound || !strings.Contains(o.Body, "<h1>Not found</h1>") {
		t.Fatalf("unknown page: %d", o.Status)
	}
}
