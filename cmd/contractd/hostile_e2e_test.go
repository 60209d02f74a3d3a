package main

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/wechatpaysim"
)

// hostileDo sends a request whose Content-Type the caller chooses ("" for
// none) and checks the answer against openapi.yaml like stack.do.
func hostileDo(s *stack, method, path, token, contentType, body string) response {
	s.t.Helper()
	r := request{Method: method, Path: path, Token: token, ContentType: contentType}
	if contentType == "" {
		r.ContentType = noContentType
	}
	if body != "" {
		r.Body = body
	}
	return call(s.t, s.URL, r)
}

// hostileRaw writes a request as raw bytes (what Go's client refuses to
// send) and reads the answer.
func hostileRaw(t *testing.T, s *stack, raw string) response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", raw, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// hostileEnvelope encrypts plaintext exactly as given (it may hold bytes
// json.Marshal would never write) into a notification body.
func hostileEnvelope(t testing.TB, keys *wechatpaysim.KeySet, id, eventType string, plain []byte) []byte {
	t.Helper()
	nonce := ntRandom(6)
	block, err := aes.NewCipher([]byte(keys.APIv3Key))
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	const ad = "papay"
	body, err := json.Marshal(map[string]any{
		"id": id, "create_time": time.Now().UTC().Format(time.RFC3339), "resource_type": "encrypt-resource",
		"event_type": eventType, "summary": "test",
		"resource": map[string]string{
			"algorithm": "AEAD_AES_256_GCM", "original_type": ad, "associated_data": ad, "nonce": nonce,
			"ciphertext": base64.StdEncoding.EncodeToString(gcm.Seal(nil, []byte(nonce), plain, []byte(ad))),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// hostilePostNotification posts a signed notification body and checks the
// answer against openapi.yaml.
func hostilePostNotification(t testing.TB, s *stack, body []byte, key *rsa.PrivateKey) response {
	t.Helper()
	return hostilePostNotificationAs(t, s, body, key, "application/json")
}

// hostilePostNotificationAs is hostilePostNotification with a chosen
// Content-Type ("" for none).
func hostilePostNotificationAs(t testing.TB, s *stack, body []byte, key *rsa.PrivateKey, contentType string) response {
	t.Helper()
	r := request{Method: http.MethodPost, Path: "/v1/notifications/wechatpay", Body: body,
		Header: ntWeChatHeaders(t, s.Keys, body, key), ContentType: contentType, Client: &http.Client{Timeout: 30 * time.Second}}
	if contentType == "" {
		r.ContentType = noContentType
	}
	return call(t, s.URL, r)
}

// hostileError is an error answer, decoded.
type hostileError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  struct {
		Fields []struct{ Field, Reason string } `json:"fields"`
	} `json:"detail"`
}

func (e hostileError) names(field string) bool {
	for _, f := range e.Detail.Fields {
		if f.Field == field {
			return true
		}
	}
	return false
}

// goInternals are phrases of Go's own error texts that must never reach a
// caller.
var goInternals = []string{"json: ", "Go struct", "of type", "int64", "5m0s", "2h0m0s", "10m0s", "EOF", "Bad Request"}

// Issue 10, first section: each example of odd or hostile input answers a
// JSON 4xx naming the problem, and writes nothing.
func TestHostileInputAnswersAClearJSON4xxAndWritesNothing(t *testing.T) {
	s := startStack(t, stackOptions{})
	presign := func(edit string) string {
		return `{"channel":"app","out_contract_code":"h1","plan_id":123,"user_display_name":"Zhang San"` + edit + `}`
	}
	cases := []struct {
		name, method, path, token, ctype, body string
		status                                 int
		code                                   string
		field                                  string // in detail.fields, when set
		inMessage                              string // in message, when set
	}{
		{"NUL in a contract code", "GET", "/v1/contracts/%00", opsToken, "", "", 400, "PARAM_ERROR", "path", "NUL"},
		{"NUL inside a code", "GET", "/v1/contracts/a%00b", opsToken, "", "", 400, "PARAM_ERROR", "path", "NUL"},
		{"NUL in a history path", "GET", "/v1/contracts/%00/events", opsToken, "", "", 400, "PARAM_ERROR", "path", ""},
		{"NUL in a sync path", "POST", "/v1/contracts/%00/sync", opsToken, "", "", 400, "PARAM_ERROR", "path", ""},
		{"NUL in a terminate path", "POST", "/v1/contracts/%00/terminate", opsToken, "application/json", `{"note":"x"}`, 400, "PARAM_ERROR", "path", ""},
		{"NUL in sub_mchid", "GET", "/v1/contracts?sub_mchid=%00", opsToken, "", "", 400, "PARAM_ERROR", "sub_mchid", ""},
		{"NUL in channel", "GET", "/v1/contracts?channel=%00", opsToken, "", "", 400, "PARAM_ERROR", "channel", ""},
		{"NUL in a terminate note", "POST", "/v1/contracts/c1/terminate", opsToken, "application/json", `{"note":"a\u0000b"}`, 400, "PARAM_ERROR", "note", "NUL"},
		{"invalid UTF-8 in a query value", "GET", "/v1/contracts?cursor=%ff", opsToken, "", "", 400, "PARAM_ERROR", "cursor", "UTF-8"},
		{"over-long query value", "GET", "/v1/contracts?cursor=" + strings.Repeat("a", 300), opsToken, "", "", 400, "PARAM_ERROR", "cursor", ""},
		{"over-long path", "GET", "/v1/contracts/" + strings.Repeat("a", 300), opsToken, "", "", 400, "PARAM_ERROR", "path", ""},
		{"over-long code", "GET", "/v1/contracts/" + strings.Repeat("a", 33), opsToken, "", "", 400, "PARAM_ERROR", "out_contract_code", "32"},
		{"a slash-free code rule on the path", "GET", "/v1/contracts/a%2Fb", opsToken, "", "", 400, "PARAM_ERROR", "out_contract_code", ""},
		{"repeated JSON key", "POST", "/v1/contracts/pre-sign", appToken, "application/json", presign(`,"plan_id":456`), 400, "PARAM_ERROR", "plan_id", "repeated"},
		{"lone surrogate escape", "POST", "/v1/contracts/pre-sign", appToken, "application/json", `{"channel":"app","out_contract_code":"h1","plan_id":123,"user_display_name":"\ud800"}`, 400, "PARAM_ERROR", "user_display_name", "surrogate"},
		{"raw invalid UTF-8", "POST", "/v1/contracts/pre-sign", appToken, "application/json", "{\"channel\":\"app\",\"out_contract_code\":\"h1\",\"plan_id\":123,\"user_display_name\":\"\xff\"}", 400, "PARAM_ERROR", "user_display_name", ""},
		{"pre-sign as text/plain", "POST", "/v1/contracts/pre-sign", appToken, "text/plain", presign(""), 415, "UNSUPPORTED_MEDIA_TYPE", "", "application/json"},
		{"pre-sign without Content-Type", "POST", "/v1/contracts/pre-sign", appToken, "", presign(""), 415, "UNSUPPORTED_MEDIA_TYPE", "", "application/json"},
		{"pre-sign with another charset", "POST", "/v1/contracts/pre-sign", appToken, "application/json; charset=latin1", presign(""), 415, "UNSUPPORTED_MEDIA_TYPE", "", ""},
		{"terminate as text/plain", "POST", "/v1/contracts/c1/terminate", opsToken, "text/plain", `{"note":"x"}`, 415, "UNSUPPORTED_MEDIA_TYPE", "", ""},
		{"channel=bogus", "GET", "/v1/contracts?channel=bogus", opsToken, "", "", 400, "PARAM_ERROR", "channel", ""},
		{"service_id=-5", "GET", "/v1/contracts?service_id=-5", opsToken, "", "", 400, "PARAM_ERROR", "service_id", "positive"},
		{"plan_id=0", "GET", "/v1/contracts?plan_id=0", opsToken, "", "", 400, "PARAM_ERROR", "plan_id", ""},
		{"state=bogus", "GET", "/v1/contracts?state=bogus", opsToken, "", "", 400, "PARAM_ERROR", "state", ""},
		{"created_from not a time", "GET", "/v1/contracts?created_from=yesterday", opsToken, "", "", 400, "PARAM_ERROR", "created_from", "RFC3339"},
		{"GET of the pre-sign path", "GET", "/v1/contracts/pre-sign", appToken, "", "", 405, "METHOD_NOT_ALLOWED", "", "POST"},
		{"no such route", "GET", "/v2/nothing", opsToken, "", "", 404, "NOT_FOUND", "", ""},
		{"a known path with another method", "DELETE", "/v1/contracts", opsToken, "", "", 405, "METHOD_NOT_ALLOWED", "", ""},
		{"expired_time as a number", "POST", "/v1/contracts/pre-sign", appToken, "application/json", presign(`,"expired_time":1795464184`), 400, "PARAM_ERROR", "expired_time", "must be a string"},
		{"plan_id as a string", "POST", "/v1/contracts/pre-sign", appToken, "application/json", `{"channel":"app","out_contract_code":"h1","plan_id":"123","user_display_name":"Zhang San"}`, 400, "PARAM_ERROR", "plan_id", "must be an integer"},
		{"terminate without a body", "POST", "/v1/contracts/c1/terminate", opsToken, "application/json", "", 400, "PARAM_ERROR", "note", "note"},
		{"expiry outside the window", "POST", "/v1/contracts/pre-sign", appToken, "application/json",
			`{"channel":"h5","out_contract_code":"h1","plan_id":123,"user_display_name":"Zhang San","expired_time":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"}`,
			400, "PARAM_ERROR", "expired_time", ""},
		{"the reserved code", "POST", "/v1/contracts/pre-sign", appToken, "application/json", `{"channel":"app","out_contract_code":"pre-sign","plan_id":123,"user_display_name":"Zhang San"}`, 400, "PARAM_ERROR", "out_contract_code", "reserved"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := hostileDo(s, tc.method, tc.path, tc.token, tc.ctype, tc.body)
			if r.Status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.status, r.Body)
			}
			var e hostileError
			r.JSON(t, &e)
			if e.Code != tc.code || e.Message == "" {
				t.Fatalf("code %q message %q, want %s: %s", e.Code, e.Message, tc.code, r.Body)
			}
			if tc.field != "" && !e.names(tc.field) {
				t.Errorf("detail.fields does not name %s: %s", tc.field, r.Body)
			}
			if tc.inMessage != "" && !strings.Contains(string(r.Body), tc.inMessage) {
				t.Errorf("answer does not say %q: %s", tc.inMessage, r.Body)
			}
			for _, g := range goInternals {
				if strings.Contains(string(r.Body), g) {
					t.Errorf("answer leaks Go's words %q: %s", g, r.Body)
				}
			}
		})
	}
	t.Run("expiry rule speaks minutes", func(t *testing.T) {
		r := hostileDo(s, "POST", "/v1/contracts/pre-sign", appToken, "application/json",
			`{"channel":"h5","out_contract_code":"h1","plan_id":123,"user_display_name":"Zhang San","expired_time":"`+time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`"}`)
		if !strings.Contains(string(r.Body), "must be between 5 and 10 minutes after the request") {
			t.Fatalf("%s", r.Body)
		}
	})

	// What Go's HTTP server refuses before any handler runs.
	raw := []struct{ name, request string }{
		{"%zz in the path", "GET /v1/contracts/%zz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + opsToken + "\r\n\r\n"},
		{"a lone % in the path", "GET /v1/contracts/% HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"byte 0x7f in Authorization", "GET /v1/contracts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \x7f\r\n\r\n"},
		{"no Host", "GET /v1/contracts HTTP/1.1\r\n\r\n"},
	}
	for _, tc := range raw {
		t.Run(tc.name, func(t *testing.T) {
			r := hostileRaw(t, s, tc.request)
			if r.Status != 400 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("%d %q: %s", r.Status, r.Header.Get("Content-Type"), r.Body)
			}
			var e hostileError
			r.JSON(t, &e)
			if e.Code != "PARAM_ERROR" || e.Message == "" {
				t.Fatalf("%s", r.Body)
			}
			if err := specFor(t, s.URL).doc.Components.Schemas["Error"].Value.VisitJSON(jsonValue(t, r.Body)); err != nil {
				t.Fatalf("not the Error schema: %v", err)
			}
		})
	}
	t.Run("invalid UTF-8 in Authorization", func(t *testing.T) {
		r := hostileRaw(t, s, "GET /v1/contracts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n\r\n")
		var e hostileError
		r.JSON(t, &e)
		if r.Status != 400 || e.Code != "PARAM_ERROR" || !e.names("header Authorization") {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	})

	if n := s.count(`SELECT count(*) FROM contracts`); n != 0 {
		t.Errorf("refused requests stored %d contracts", n)
	}
	if n := s.count(`SELECT count(*) FROM contract_events`); n != 0 {
		t.Errorf("refused requests stored %d history rows", n)
	}
	if n := len(s.Sim.Requests()); n != 0 {
		t.Errorf("refused requests made %d calls to WeChat", n)
	}
}

func jsonValue(t testing.TB, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return v
}

// Issue 10: a verified notification whose content breaks a field rule is
// kept in the inbox as rejected with its reason, counted, and answered 204;
// no contract is created, and a redelivery only counts.
func TestNotificationBreakingFieldRulesIsKeptAsRejectedAnd204(t *testing.T) {
	s := startStack(t, stackOptions{})
	good := func(code, openid string) map[string]any {
		r := ntSignResource(s.Keys, code, "wx"+ntRandom(8))
		r["openid"] = openid
		return r
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name   string
		plain  []byte
		reason string
	}{
		{"NUL in out_contract_code", mustJSON(good("a\x00b", "o1")), "out_contract_code"},
		{"NUL in openid", mustJSON(good("n1", "o\x00x")), "resource.openid must not contain NUL"},
		{"a slash in out_contract_code", mustJSON(good("a/b", "o1")), "resource.out_contract_code must be visible ASCII"},
		{"5,000 characters of code", mustJSON(good(strings.Repeat("9", 5000), "o1")), "resource.out_contract_code"},
		{"the reserved code", mustJSON(good("pre-sign", "o1")), "reserved"},
		{"a lone surrogate", bytes.Replace(mustJSON(good("n2", "LONE")), []byte("LONE"), []byte(`\ud800`), 1), "surrogate"},
		{"raw invalid UTF-8", bytes.Replace(mustJSON(good("n3", "LONE")), []byte("LONE"), []byte("\xff"), 1), "UTF-8"},
		{"a repeated key", bytes.Replace(mustJSON(good("n4", "o1")), []byte(`{`), []byte(`{"out_contract_code":"n5",`), 1), "repeated"},
		{"a NUL in a key", bytes.Replace(mustJSON(good("n6", "o1")), []byte(`{`), []byte(`{"a\u0000":1,`), 1), "must not contain NUL"},
		{"no out_contract_code", mustJSON(without(good("n7", "o1"), "out_contract_code")), "lacks out_contract_code"},
		{"an operate_time that does not parse", mustJSON(with(good("n8", "o1"), "operate_time", "soon")), "operate time"},
	}
	metricBefore := rejectedMetric(t, s)
	t.Run("an envelope id holding NUL", func(t *testing.T) {
		plain := mustJSON(good("n9", "o1"))
		body := hostileEnvelope(t, s.Keys, "bad\x00id", "PAPAY.SIGN", plain)
		if r := hostilePostNotification(t, s, body, s.Keys.PlatformKey); r.Status != http.StatusNoContent {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		sum := sha256.Sum256(body)
		if n := s.count(`SELECT count(*) FROM wechat_notifications WHERE notification_id = $1 AND outcome = 'rejected'
			AND reason LIKE 'id must not contain NUL%'`, "sha256:"+hex.EncodeToString(sum[:])); n != 1 {
			t.Fatalf("no rejected row under the body's digest")
		}
	})
	metricBefore++ // the envelope case above
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "rej-" + strconv.Itoa(i) + "-" + ntRandom(4)
			body := hostileEnvelope(t, s.Keys, id, "PAPAY.SIGN", tc.plain)
			for delivery := 1; delivery <= 2; delivery++ {
				if r := hostilePostNotification(t, s, body, s.Keys.PlatformKey); r.Status != http.StatusNoContent {
					t.Fatalf("delivery %d: %d %s", delivery, r.Status, r.Body)
				}
			}
			outcome, reason, deliveries := inboxRow(t, s, id)
			if outcome != "rejected" || !strings.Contains(reason, tc.reason) || deliveries != 2 {
				t.Fatalf("inbox row %q %q %d, want rejected naming %q, 2 deliveries", outcome, reason, deliveries, tc.reason)
			}
			var raw []byte
			if err := s.DB.Pool.QueryRow(t.Context(), `SELECT raw_resource FROM wechat_notifications WHERE notification_id = $1`, id).Scan(&raw); err != nil || !bytes.Equal(raw, tc.plain) {
				t.Fatalf("raw_resource %q (%v), want the plaintext as sent", raw, err)
			}
		})
	}
	if n := s.count(`SELECT count(*) FROM contracts`); n != 0 {
		t.Errorf("rejected notifications created %d contracts", n)
	}
	if got := rejectedMetric(t, s) - metricBefore; got != float64(len(cases)) {
		t.Errorf(`contractd_notifications_total{result="rejected"} rose by %v, want %d`, got, len(cases))
	}
	t.Run("the route stays lenient about Content-Type", func(t *testing.T) {
		for i, ct := range []string{"text/plain", ""} {
			code := "lenient" + strconv.Itoa(i)
			body := hostileEnvelope(t, s.Keys, "ok-"+ntRandom(6), "PAPAY.SIGN", mustJSON(good(code, "o1")))
			if r := hostilePostNotificationAs(t, s, body, s.Keys.PlatformKey, ct); r.Status != http.StatusNoContent {
				t.Fatalf("Content-Type %q: %d %s", ct, r.Status, r.Body)
			}
			if st := ntState(t, s, code); st != "signed" {
				t.Fatalf("Content-Type %q: state %q, want signed", ct, st)
			}
		}
	})
	t.Run("the input boundary answers FAIL on the notification route", func(t *testing.T) {
		r := hostileDo(s, "POST", "/v1/notifications/wechatpay?x=%00", "", "text/plain", `{}`)
		ntExpectFail(t, r, http.StatusBadRequest)
		if !strings.Contains(string(r.Body), "NUL") {
			t.Fatalf("%s", r.Body)
		}
	})
	t.Run("a refused notification's message says its cause once", func(t *testing.T) {
		r := hostileDo(s, "POST", "/v1/notifications/wechatpay", "", "application/json", `{}`)
		if r.Status != http.StatusUnauthorized {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		if n := strings.Count(string(r.Body), "missing Wechatpay-* headers"); n != 1 {
			t.Fatalf("cause said %d times: %s", n, r.Body)
		}
	})
}

func without(m map[string]any, key string) map[string]any { delete(m, key); return m }

func with(m map[string]any, key string, v any) map[string]any { m[key] = v; return m }

// rejectedMetric reads contractd_notifications_total{result="rejected"}.
func rejectedMetric(t *testing.T, s *stack) float64 {
	t.Helper()
	r := s.do(http.MethodGet, "/metrics", "", nil)
	for _, l := range strings.Split(string(r.Body), "\n") {
		if strings.HasPrefix(l, `contractd_notifications_total{result="rejected"} `) {
			v, err := strconv.ParseFloat(strings.Fields(l)[1], 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	return 0
}
