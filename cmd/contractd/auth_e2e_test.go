package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// authLimit is the failed-token budget of one client address within the
// window (config.DefaultAuthFailureLimit), which these tests run with.
const authLimit = 5

// authAnswer is the outcome of one request sent from a goroutine.
type authAnswer struct {
	Status     int
	RetryAfter string
	Location   string
	Body       string
	Err        error
}

// authSend sends a request through send (so an API answer is checked
// against openapi.yaml) without failing the test, so that goroutines may
// use it; xff, when set, is sent as X-Forwarded-For. Redirects are not
// followed: the console's answers are read as they come.
func authSend(t testing.TB, method, base, path, xff string, header http.Header, form url.Values) authAnswer {
	r := request{Method: method, Path: path, Header: http.Header{},
		Client: &http.Client{Timeout: 120 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	for k, vs := range header {
		r.Header[k] = vs
	}
	if form != nil {
		r.Body, r.ContentType = form.Encode(), "application/x-www-form-urlencoded"
	}
	if xff != "" {
		r.Header.Set("X-Forwarded-For", xff)
	}
	out, err := send(t, base, r)
	if err != nil {
		return authAnswer{Err: err}
	}
	return authAnswer{Status: out.Status, RetryAfter: out.Header.Get("Retry-After"), Location: out.Header.Get("Location"), Body: string(out.Body)}
}

// authBearer asks base for one page of contracts with token, as the client
// xff behind a proxy when xff is set.
func authBearer(t testing.TB, base, token, xff string) authAnswer {
	return authSend(t, http.MethodGet, base, "/v1/contracts?limit=1", xff, http.Header{"Authorization": {"Bearer " + token}}, nil)
}

// signInForm is a console sign-in page as a browser holds it: its CSRF
// cookie and the form's token.
type signInForm struct {
	t                       testing.TB
	base, cookie, csrf, xff string
}

// openSignIn opens the sign-in page of base (as the client xff when set).
func openSignIn(t *testing.T, base, xff string) signInForm {
	t.Helper()
	a := authSend(t, http.MethodGet, base, "/ops/signin", xff, nil, nil)
	if a.Err != nil || a.Status != http.StatusOK {
		t.Fatalf("sign-in page: %d %v", a.Status, a.Err)
	}
	m := csrfField.FindStringSubmatch(a.Body)
	if m == nil {
		t.Fatal("no CSRF field on the sign-in page")
	}
	return signInForm{t: t, base: base, csrf: m[1], cookie: m[1], xff: xff}
}

// post submits the form with token.
func (f signInForm) post(token string) authAnswer {
	h := http.Header{"Cookie": {"contractd_console_signin=" + f.cookie}}
	return authSend(f.t, http.MethodPost, f.base, "/ops/signin", f.xff, h, url.Values{"csrf": {f.csrf}, "token": {token}})
}

// releaseTogether runs n calls of send at once and returns their answers.
func releaseTogether(n int, send func(i int) authAnswer) []authAnswer {
	answers := make([]authAnswer, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			answers[i] = send(i)
		})
	}
	close(start)
	wg.Wait()
	return answers
}

// statusCounts counts answers by status, failing the test on a transport
// error or a 429 without a sane Retry-After.
func statusCounts(t *testing.T, answers []authAnswer, window time.Duration) map[int]int {
	t.Helper()
	counts := map[int]int{}
	for i, a := range answers {
		if a.Err != nil {
			t.Fatalf("request %d: %v", i, a.Err)
		}
		counts[a.Status]++
		if a.Status == http.StatusTooManyRequests {
			secs, err := strconv.Atoi(a.RetryAfter)
			if err != nil || secs < 1 || secs > int(window.Seconds()) {
				t.Fatalf("request %d: 429 with Retry-After %q", i, a.RetryAfter)
			}
		}
	}
	return counts
}

// A console session is bound to the token that opened it: once a replica
// runs without that token (bob's was revoked, and that replica restarted
// without it), the session is refused there at its very next request, and
// nothing it posts is done. Replicas share the sessions table, so this is
// a second server on the same schema.
func TestConsoleSessionEndsWhenItsTokenIsNoLongerConfigured(t *testing.T) {
	t.Parallel()
	const bobToken = "bob-ops-token-6b1d0c2e9f47a5d3"
	tokens := "app:" + appToken + ",ops:" + opsToken + ",ops:alice:" + aliceToken
	s := startStack(t, stackOptions{Env: map[string]string{"CONTRACTD_API_TOKENS": tokens + ",ops:bob:" + bobToken}})
	revoked := startReplicaWith(t, s, io.Discard, map[string]string{"CONTRACTD_API_TOKENS": tokens})
	const code = "revoked-bob-1"
	opsSigned(t, s, code)

	bob := newConsoleClient(t, s.URL)
	if r := bob.signIn(bobToken); r.Status != http.StatusSeeOther {
		t.Fatalf("bob's sign-in: %d", r.Status)
	}
	page := bob.do(http.MethodGet, "/ops/contract?code="+code, nil)
	if page.Status != http.StatusOK || !strings.Contains(page.Body, "Signed in as bob") {
		t.Fatalf("bob's contract page: %d", page.Status)
	}
	formToken := csrf(t, page)

	// The session row holds neither the token nor an unkeyed hash of it.
	sum := sha256.Sum256([]byte(bobToken))
	rows, err := s.DB.Pool.Query(context.Background(), `SELECT row_to_json(s)::text FROM console_sessions s`)
	if err != nil {
		t.Fatal(err)
	}
	var dump []string
	for rows.Next() {
		var row string
		if err := rows.Scan(&row); err != nil {
			t.Fatal(err)
		}
		dump = append(dump, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{bobToken, hex.EncodeToString(sum[:])} {
		if strings.Contains(strings.Join(dump, "\n"), secret) {
			t.Fatalf("console_sessions holds %q", secret)
		}
	}

	// Alice's token is configured everywhere: her session works on both.
	alice := newConsoleClient(t, s.URL)
	if r := alice.signIn(aliceToken); r.Status != http.StatusSeeOther {
		t.Fatalf("alice's sign-in: %d", r.Status)
	}
	aliceThere := newConsoleClient(t, revoked)
	aliceThere.cookies["contractd_console"] = alice.cookies["contractd_console"]
	if p := aliceThere.do(http.MethodGet, "/ops/", nil); p.Status != http.StatusOK || !strings.Contains(p.Body, "Signed in as alice") {
		t.Fatalf("alice on the other replica: %d", p.Status)
	}

	// The API already refuses bob's token where it is not configured.
	if r := doAt(t, revoked, http.MethodGet, "/v1/contracts/"+code, bobToken, nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("bob's bearer token on the revoked replica: %d", r.Status)
	}
	// So does the console: bob's terminate is refused and changes nothing.
	bobThere := newConsoleClient(t, revoked)
	bobThere.cookies["contractd_console"] = bob.cookies["contractd_console"]
	r := bobThere.do(http.MethodPost, "/ops/contract/terminate", url.Values{"csrf": {formToken}, "code": {code}, "note": {"bye"}, "confirm": {"yes"}})
	if r.Status != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/ops/signin") {
		t.Fatalf("bob's terminate on the revoked replica: %d %s", r.Status, r.Header.Get("Location"))
	}
	if st := ntState(t, s, code); st != "signed" {
		t.Fatalf("after bob's refused terminate the contract is %s", st)
	}
	if n := s.count(`SELECT count(*) FROM contract_events WHERE event = 'terminate'`); n != 0 {
		t.Fatalf("%d terminate rows", n)
	}
	bobThere.cookies["contractd_console"] = bob.cookies["contractd_console"]
	if p := bobThere.do(http.MethodGet, "/ops/", nil); p.Status != http.StatusSeeOther || strings.Contains(p.Body, "Signed in as bob") {
		t.Fatalf("bob's overview on the revoked replica: %d", p.Status)
	}
	// And a new sign-in with the revoked token is refused there.
	if r := newConsoleClient(t, revoked).signIn(bobToken); r.Status != http.StatusUnauthorized {
		t.Fatalf("bob's sign-in on the revoked replica: %d", r.Status)
	}
	// The same token given to another holder does not carry bob's session
	// over either: the session is bound to the token and its holder.
	renamed := startReplicaWith(t, s, io.Discard, map[string]string{"CONTRACTD_API_TOKENS": tokens + ",ops:robert:" + bobToken})
	bobRenamed := newConsoleClient(t, renamed)
	bobRenamed.cookies["contractd_console"] = bob.cookies["contractd_console"]
	if p := bobRenamed.do(http.MethodGet, "/ops/", nil); p.Status != http.StatusSeeOther {
		t.Fatalf("bob's session where his token names robert: %d", p.Status)
	}
	// Where the token is still bob's, the session goes on.
	if p := bob.do(http.MethodGet, "/ops/", nil); p.Status != http.StatusOK || !strings.Contains(p.Body, "Signed in as bob") {
		t.Fatalf("bob's session on the replica that still has his token: %d", p.Status)
	}
}

// 100 wrong-token sign-ins released together from one address, on two
// replicas: exactly the limit of them are checked (401), every other one
// is refused with 429 without its token being looked at; then even the
// right token is refused, and the page says so.
func TestConcurrentWrongSignInsAreCountedAtomically(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{Env: map[string]string{
		"CONTRACTD_API_TOKENS": "app:" + appToken + ",ops:" + opsToken + ",ops:alice:" + aliceToken,
	}})
	other := startReplica(t, s, io.Discard)
	bases := []string{s.URL, other}
	const n = 100
	forms := make([]signInForm, n)
	for i := range n {
		forms[i] = openSignIn(t, bases[i%2], "")
	}
	answers := releaseTogether(n, func(i int) authAnswer { return forms[i].post(fmt.Sprintf("wrong-sign-in-token-%03d", i)) })
	counts := statusCounts(t, answers, 15*time.Minute)
	if counts[http.StatusUnauthorized] != authLimit || counts[http.StatusTooManyRequests] != n-authLimit {
		t.Fatalf("answers by status %v, want %d × 401 and %d × 429", counts, authLimit, n-authLimit)
	}
	for _, base := range bases {
		a := openSignIn(t, base, "").post(aliceToken)
		if a.Status != http.StatusTooManyRequests || !strings.Contains(a.Body, "even with the right token") {
			t.Fatalf("the right token after the limit at %s: %d %.300s", base, a.Status, a.Body)
		}
	}
	if n := s.count(`SELECT count(*) FROM console_sessions`); n != 0 {
		t.Fatalf("%d sessions opened", n)
	}
}

// 100 wrong bearer tokens released together from one address, on two
// replicas: exactly the limit of them are checked (401), the rest answer
// 429 TOO_MANY_REQUESTS with Retry-After; the right token is refused too
// until the window has passed.
func TestConcurrentWrongBearerTokensAreCountedAtomically(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	other := startReplica(t, s, io.Discard)
	bases := []string{s.URL, other}
	const n = 100
	answers := releaseTogether(n, func(i int) authAnswer {
		return authBearer(t, bases[i%2], fmt.Sprintf("wrong-bearer-token-%03d", i), "")
	})
	counts := statusCounts(t, answers, 15*time.Minute)
	if counts[http.StatusUnauthorized] != authLimit || counts[http.StatusTooManyRequests] != n-authLimit {
		t.Fatalf("answers by status %v, want %d × 401 and %d × 429", counts, authLimit, n-authLimit)
	}
	for _, a := range answers {
		if a.Status != http.StatusTooManyRequests {
			continue
		}
		var e struct{ Code, Message string }
		if err := json.Unmarshal([]byte(a.Body), &e); err != nil || e.Code != "TOO_MANY_REQUESTS" || e.Message == "" {
			t.Fatalf("429 body %q", a.Body)
		}
	}
	// The right token too, on either replica, in the API's shape.
	r := s.do(http.MethodGet, "/v1/contracts?limit=1", opsToken, nil)
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("the right token after the limit: %d %s", r.Status, r.Body)
	}
	if a := authBearer(t, other, opsToken, ""); a.Status != http.StatusTooManyRequests {
		t.Fatalf("the right token at the other replica: %d", a.Status)
	}
	// Once the window has passed, the address is served again.
	if _, err := s.DB.Pool.Exec(context.Background(), `UPDATE auth_failures SET window_start = window_start - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	if r := s.do(http.MethodGet, "/v1/contracts?limit=1", opsToken, nil); r.Status != http.StatusOK {
		t.Fatalf("after the window: %d %s", r.Status, r.Body)
	}
}

// Behind a trusted proxy, the client X-Forwarded-For names is the address
// failures are counted by: two clients have a budget each. From a peer
// that is not a configured proxy, loopback included, the header is
// ignored.
func TestTrustedProxiesNameTheThrottledAddress(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{Env: map[string]string{
		"CONTRACTD_API_TOKENS":      "app:" + appToken + ",ops:" + opsToken + ",ops:alice:" + aliceToken,
		"CONTRACTD_TRUSTED_PROXIES": "127.0.0.1/32",
	}})
	const first, second = "203.0.113.7", "203.0.113.8"
	for i := range authLimit {
		for _, client := range []string{first, second} {
			if a := authBearer(t, s.URL, fmt.Sprintf("wrong-%s-%d", client, i), client); a.Status != http.StatusUnauthorized {
				t.Fatalf("failure %d of %s: %d", i+1, client, a.Status)
			}
		}
	}
	cases := []struct {
		name, xff, token string
		status           int
	}{
		{"the first client's budget is spent", first, "wrong-again", http.StatusTooManyRequests},
		{"even for its right token", first, opsToken, http.StatusTooManyRequests},
		{"a forged left part does not escape the proxy's entry", "198.51.100.99, " + first, opsToken, http.StatusTooManyRequests},
		{"another client is served", "203.0.113.9", opsToken, http.StatusOK},
	}
	for _, tc := range cases {
		if a := authBearer(t, s.URL, tc.token, tc.xff); a.Status != tc.status {
			t.Fatalf("%s: %d, want %d", tc.name, a.Status, tc.status)
		}
	}
	// The console counts by the same address.
	if a := openSignIn(t, s.URL, second).post("wrong-in-the-console"); a.Status != http.StatusTooManyRequests {
		t.Fatalf("console sign-in of the spent second client: %d", a.Status)
	}
	if a := openSignIn(t, s.URL, "203.0.113.10").post(aliceToken); a.Status != http.StatusSeeOther {
		t.Fatalf("console sign-in of a fresh client: %d", a.Status)
	}
	if n := s.count(`SELECT count(*) FROM auth_failures WHERE address IN ($1, $2)`, first, second); n != 2 {
		t.Fatalf("%d failure rows for the two clients", n)
	}

	// A replica that trusts only 10.0.0.0/8, and one that trusts nobody:
	// the loopback peer is not a proxy to either, whatever it forwards.
	for _, proxies := range []string{"10.0.0.0/8", ""} {
		base := startReplicaWith(t, s, io.Discard, map[string]string{"CONTRACTD_TRUSTED_PROXIES": proxies})
		if _, err := s.DB.Pool.Exec(context.Background(), `DELETE FROM auth_failures`); err != nil {
			t.Fatal(err)
		}
		for i := range authLimit {
			if a := authBearer(t, base, "wrong-token", fmt.Sprintf("198.51.100.%d", i+1)); a.Status != http.StatusUnauthorized {
				t.Fatalf("proxies %q: failure %d: %d", proxies, i+1, a.Status)
			}
		}
		if a := authBearer(t, base, opsToken, "198.51.100.200"); a.Status != http.StatusTooManyRequests {
			t.Fatalf("proxies %q: a new X-Forwarded-For from loopback escaped the throttle: %d", proxies, a.Status)
		}
		if n := s.count(`SELECT count(*) FROM auth_failures WHERE address = '127.0.0.1'`); n != 1 {
			t.Fatalf("proxies %q: failures not counted by the peer address", proxies)
		}
	}
}
