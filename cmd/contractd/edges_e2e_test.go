package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// edgeError is an error answer, decoded.
type edgeError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  struct {
		Fields []struct {
			Field  string `json:"field"`
			Reason string `json:"reason"`
		} `json:"fields"`
	} `json:"detail"`
}

// expectError checks an answer's status, code and message exactly, and
// its fields when given (field, reason, field, reason, ...).
func expectError(t *testing.T, r response, status int, code, message string, fields ...string) {
	t.Helper()
	var e edgeError
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("%d %s: not JSON: %v", r.Status, r.Body, err)
	}
	if r.Status != status || e.Code != code || e.Message != message {
		t.Fatalf("answer %d %s %q, want %d %s %q", r.Status, e.Code, e.Message, status, code, message)
	}
	var got []string
	for _, f := range e.Detail.Fields {
		got = append(got, f.Field, f.Reason)
	}
	if len(fields) > 0 && !slices.Equal(got, fields) {
		t.Fatalf("fields %q, want %q", got, fields)
	}
}

// rawExchange writes raw to contractd and returns the first line of the
// answer and the answer parsed.
func rawExchange(t *testing.T, s *stack, raw string) (string, response) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	first, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the first line of the answer to %.200q: %v", raw, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(first), br)), nil)
	if err != nil {
		t.Fatalf("reading the answer to %.200q: %v", raw, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimRight(first, "\r\n"), response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// withAuthorization sends a GET with the Authorization header as given.
func withAuthorization(t *testing.T, s *stack, path, authorization string) response {
	t.Helper()
	return call(t, s.URL, request{Method: http.MethodGet, Path: path, Header: http.Header{"Authorization": {authorization}}})
}

// Issue 18, point 6: the smaller edges, each with its exact answer, and
// nothing written where input is refused.
func TestSmallerEdgesAnswerExactlyAndWriteNothing(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	rows := func() string {
		return fmt.Sprint(s.count(`SELECT count(*) FROM contracts`), s.count(`SELECT count(*) FROM contract_events`),
			s.count(`SELECT coalesce(sum(version), 0) FROM contracts`))
	}

	t.Run("an openid holding CR, LF, BEL or ESC is refused", func(t *testing.T) {
		before := rows()
		for i, bad := range []string{"o\r1", "o\n1", "o\a1", "o\x1b[31m", "o 1", "o\t1"} {
			body := map[string]any{"channel": "mini_program", "out_contract_code": fmt.Sprintf("oid-%d", i), "plan_id": 1,
				"user_display_name": "Zhang San", "openid": bad}
			expectError(t, s.do(http.MethodPost, "/v1/contracts/pre-sign", appToken, body), http.StatusBadRequest,
				"PARAM_ERROR", "the request breaks field rules", "openid", "must be visible ASCII, without spaces or control characters")
		}
		if after := rows(); after != before {
			t.Fatalf("rows %s, want %s", after, before)
		}
	})

	t.Run("display names refuse C0 and C1 controls, line separators and bidi controls", func(t *testing.T) {
		before := rows()
		cases := []struct{ name, reason string }{
			{"Zhang\u0085San", "must not contain control characters (U+0085)"},
			{"Zhang\u2028San", "must not contain line or paragraph separators (U+2028)"},
			{"Zhang\u2029San", "must not contain line or paragraph separators (U+2029)"},
			{"Zhang\u202eSan", "must not contain bidi formatting characters (U+202E)"},
			{"\u2066Zhang\u2069", "must not contain bidi formatting characters (U+2066)"},
			{"Zhang\u009bSan", "must not contain control characters (U+009B)"},
			{"Zhang\x1bSan", "must not contain control characters (U+001B)"},
		}
		for i, tc := range cases {
			body := map[string]any{"channel": "app", "out_contract_code": fmt.Sprintf("dn-%d", i), "plan_id": 1, "user_display_name": tc.name}
			expectError(t, s.do(http.MethodPost, "/v1/contracts/pre-sign", appToken, body), http.StatusBadRequest,
				"PARAM_ERROR", "the request breaks field rules", "user_display_name", tc.reason)
			body = map[string]any{"product": "password_exempt", "channel": "mini_program", "out_contract_code": fmt.Sprintf("da-%d", i),
				"service_id": 7, "contract_display_account": tc.name, "openid": "o-user"}
			expectError(t, s.do(http.MethodPost, "/v1/contracts/pre-sign", appToken, body), http.StatusBadRequest,
				"PARAM_ERROR", "the request breaks field rules", "contract_display_account", tc.reason)
		}
		if after := rows(); after != before {
			t.Fatalf("rows %s, want %s", after, before)
		}
	})

	t.Run("the API's terminate note keeps the console's rule", func(t *testing.T) {
		const code = "edge-note-1"
		opsSigned(t, s, code)
		before := rows()
		cases := []struct{ note, reason string }{
			{"customer\aasked", "must not contain control characters (U+0007)"},
			{"customer\nasked", "must not contain control characters (U+000A)"},
			{"customer\u0085asked", "must not contain control characters (U+0085)"},
			{"customer\u2028asked", "must not contain line or paragraph separators (U+2028)"},
			{"customer\u202easked", "must not contain bidi formatting characters (U+202E)"},
			{"   ", "is required"},
			{strings.Repeat("x", 121), "must be at most 120 characters"},
		}
		c := newConsoleClient(t, s.URL)
		if a := c.signIn(opsToken); a.Status != http.StatusSeeOther {
			t.Fatalf("sign-in: %d", a.Status)
		}
		page := c.do(http.MethodGet, "/ops/contract?code="+code, nil)
		for _, tc := range cases {
			expectError(t, s.do(http.MethodPost, "/v1/contracts/"+code+"/terminate", opsToken, map[string]string{"note": tc.note}),
				http.StatusBadRequest, "PARAM_ERROR", "the request breaks field rules", "note", tc.reason)
			a := c.do(http.MethodPost, "/ops/contract/terminate", url.Values{"csrf": {csrf(t, page)}, "code": {code}, "note": {tc.note}, "confirm": {"yes"}})
			if a.Status != http.StatusBadRequest || !strings.Contains(html.UnescapeString(a.Body), "The termination note "+tc.reason+".") {
				t.Fatalf("console answered %d, want 400 saying the note %s: %.2000s", a.Status, tc.reason, a.Body)
			}
		}
		if after := rows(); after != before {
			t.Fatalf("rows %s, want %s", after, before)
		}
		if st := ntState(t, s, code); st != "signed" {
			t.Fatalf("state %s, want signed", st)
		}
	})

	t.Run("the bearer scheme is case-insensitive", func(t *testing.T) {
		for _, scheme := range []string{"Bearer", "bearer", "BEARER", "bEaReR"} {
			expectError(t, withAuthorization(t, s, "/v1/contracts/edge-none", scheme+" "+appToken), http.StatusNotFound,
				"CONTRACT_NOT_EXIST", "no such contract")
		}
		for _, h := range []string{"Basic " + appToken, "Bearer", "bearer ", appToken, "Bearerx " + appToken} {
			expectError(t, withAuthorization(t, s, "/v1/contracts/edge-none", h), http.StatusUnauthorized,
				"UNAUTHORIZED", "a bearer token is required")
		}
	})

	t.Run("20,000 query parameters are refused as too many", func(t *testing.T) {
		var q strings.Builder
		for i := range 20000 {
			if i > 0 {
				q.WriteByte('&')
			}
			fmt.Fprintf(&q, "p%d=1", i)
		}
		expectError(t, withAuthorization(t, s, "/v1/contracts?"+q.String(), "Bearer "+opsToken), http.StatusBadRequest,
			"PARAM_ERROR", "the query holds 20000 parameters; at most 100 are taken", "query", "must hold at most 100 parameters")
		// A query within the bound still answers.
		if r := withAuthorization(t, s, "/v1/contracts?limit=1", "Bearer "+opsToken); r.Status != http.StatusOK {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})

	t.Run("a declared body over the limit is refused before 100 Continue", func(t *testing.T) {
		before := rows()
		for _, tc := range []struct{ path, headers string }{
			{"/v1/contracts/pre-sign", "Authorization: Bearer " + appToken + "\r\nContent-Type: application/json\r\n"},
			{"/v1/notifications/wechatpay", "Content-Type: application/json\r\n"},
		} {
			first, r := rawExchange(t, s, "POST "+tc.path+" HTTP/1.1\r\nHost: x\r\n"+tc.headers+
				"Expect: 100-continue\r\nContent-Length: 52428800\r\n\r\n")
			if !strings.HasPrefix(first, "HTTP/1.1 413 ") {
				t.Fatalf("%s: first line %q, want 413", tc.path, first)
			}
			var e edgeError
			if err := json.Unmarshal(r.Body, &e); err != nil {
				t.Fatalf("%s: %s", tc.path, r.Body)
			}
			want := edgeError{Code: "PAYLOAD_TOO_LARGE", Message: "the body is over 65536 bytes"}
			if tc.path == "/v1/notifications/wechatpay" {
				want = edgeError{Code: "FAIL", Message: "PAYLOAD_TOO_LARGE: the body is over 65536 bytes"}
			}
			if e.Code != want.Code || e.Message != want.Message {
				t.Fatalf("%s: %s, want %+v", tc.path, r.Body, want)
			}
		}
		if after := rows(); after != before {
			t.Fatalf("rows %s, want %s", after, before)
		}
	})

	t.Run("the assets directory is no listing", func(t *testing.T) {
		c := newConsoleClient(t, s.URL)
		a := c.do(http.MethodGet, "/ops/assets/", nil)
		if a.Status != http.StatusNotFound || !strings.HasPrefix(a.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(a.Body, `<p class="problem" role="alert">There is no console page at this address.</p>`) ||
			strings.Contains(a.Body, `<a href="console.css">`) {
			t.Fatalf("%d %s: %.1000s", a.Status, a.Header.Get("Content-Type"), a.Body)
		}
		for _, asset := range []string{"/ops/assets/console.css", "/ops/assets/feed.js"} {
			if a := c.do(http.MethodGet, asset, nil); a.Status != http.StatusOK || a.Body == "" {
				t.Fatalf("%s: %d", asset, a.Status)
			}
		}
	})

	t.Run("a 50 MB sign-in form is refused with 413 on the console's page", func(t *testing.T) {
		sessions := s.count(`SELECT count(*) FROM console_sessions`)
		chunk := strings.Repeat("a", 32<<10)
		chunked := "POST /ops/signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n"
		for range 4 {
			chunked += fmt.Sprintf("%x\r\n%s\r\n", len(chunk), chunk)
		}
		chunked += "0\r\n\r\n"
		for _, raw := range []string{
			"POST /ops/signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 52428800\r\n\r\ntoken=x&csrf=y&",
			"POST /ops/signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nExpect: 100-continue\r\nContent-Length: 52428800\r\n\r\n",
			chunked,
		} {
			first, r := rawExchange(t, s, raw)
			if !strings.HasPrefix(first, "HTTP/1.1 413 ") || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") ||
				!strings.Contains(string(r.Body), `<p class="problem" role="alert">This form is over 64 KiB: nothing was done.</p>`) {
				t.Fatalf("%.100q: %q %s: %.1000s", raw, first, r.Header.Get("Content-Type"), r.Body)
			}
		}
		if n := s.count(`SELECT count(*) FROM console_sessions`); n != sessions {
			t.Fatalf("sessions %d, want %d", n, sessions)
		}
	})
}

// Issue 18, point 6: a body that stalls past the server's read timeout is
// refused saying so, without the socket addresses Go's error holds.
func TestStalledBodyIsRefusedWithoutSocketAddresses(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{Env: map[string]string{"CONTRACTD_HTTP_READ_TIMEOUT": "1s"}})
	before := s.count(`SELECT count(*) FROM contracts`)
	body := `{"channel":"app","out_contract_code":"slow-1","plan_id":1,"user_display_name":"Zhang San"}`
	raw := "POST /v1/contracts/pre-sign HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + appToken +
		"\r\nContent-Type: application/json\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n" + body[:20]
	// The rest of the body never comes: the answer arrives once the
	// server's read timeout has passed.
	_, r := rawExchange(t, s, raw)
	expectError(t, r, http.StatusBadRequest, "PARAM_ERROR", "the body did not arrive in time: the connection stalled before all of it was sent")
	if strings.Contains(string(r.Body), "127.0.0.1") || strings.Contains(string(r.Body), "tcp") {
		t.Fatalf("the answer leaks socket details: %s", r.Body)
	}
	if n := s.count(`SELECT count(*) FROM contracts`); n != before {
		t.Fatalf("contracts %d, want %d", n, before)
	}
}
