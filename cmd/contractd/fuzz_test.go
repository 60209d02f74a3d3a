package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The fuzz targets of issue 10 hold one property over contractd's HTTP
// surface: every answer is a 2xx or one of our JSON 4xx (the Error shape of
// openapi.yaml, or FAIL on the notification route), never a 5xx while the
// database is up, and a 4xx writes nothing. Their seeds and every input that
// ever failed are kept under testdata/fuzz/<Target>/ and run as tests.

// fuzzView is the stack as seen by one fuzz input: its helpers report to t.
func fuzzView(s *stack, t *testing.T) *stack {
	v := *s
	v.t = t
	return &v
}

// fuzzRows counts what a request could have written.
func fuzzRows(s *stack) int {
	return s.count(`SELECT (SELECT count(*) FROM contracts) + (SELECT count(*) FROM contract_events)
		+ (SELECT count(*) FROM wechat_notifications)`)
}

// fuzzErrorCodes are the codes openapi.yaml's Error schema allows.
func fuzzErrorCodes(t *testing.T, s *stack) map[string]bool {
	codes := map[string]bool{}
	for _, v := range specFor(t, s.URL).doc.Components.Schemas["Error"].Value.Properties["code"].Value.Enum {
		codes[v.(string)] = true
	}
	return codes
}

// fuzzCheck holds the property for one answer.
func fuzzCheck(t *testing.T, what string, r response, codes map[string]bool, before, after int) {
	t.Helper()
	if r.Status >= 500 {
		t.Fatalf("%s answered %d: %s", what, r.Status, clipBody(r.Body))
	}
	if r.Status < 400 {
		return
	}
	if after != before {
		t.Fatalf("%s answered %d but wrote %d rows", what, r.Status, after-before)
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("%s answered %d as %q: %s", what, r.Status, r.Header.Get("Content-Type"), clipBody(r.Body))
	}
	var e struct{ Code, Message string }
	if err := json.Unmarshal(r.Body, &e); err != nil || !codes[e.Code] || e.Message == "" {
		t.Fatalf("%s answered %d, not our error: %s", what, r.Status, clipBody(r.Body))
	}
}

func FuzzPreSignBody(f *testing.F) {
	for _, seed := range []string{
		`{"channel":"app","out_contract_code":"f1","plan_id":123,"user_display_name":"Zhang San"}`,
		`{"channel":"mini_program","out_contract_code":"f2","plan_id":1,"user_display_name":"名字","openid":"o1"}`,
		`{"channel":"h5","out_contract_code":"f3","plan_id":1,"user_display_name":"x","user_client_ip":"1.2.3.4"}`,
		`{"channel":"web","out_contract_code":"f4","plan_id":1,"user_display_name":"x","return_url":"https://a.example/b"}`,
		`{"product":"password_exempt","channel":"mini_program","out_contract_code":"f5","service_id":7,"contract_display_account":"acc","openid":"o"}`,
		`{"channel":"app","out_contract_code":"f6","plan_id":1,"plan_id":2,"user_display_name":"x"}`,
		`{"channel":"app","out_contract_code":"f7","plan_id":1,"user_display_name":"\ud800"}`,
		`{"channel":"app","out_contract_code":"f\u0000","plan_id":1,"user_display_name":"x"}`,
		`{"channel":"app","out_contract_code":"f8","plan_id":"1","user_display_name":"x"}`,
		`{"channel":"app","out_contract_code":"f9","plan_id":1,"user_display_name":"x","expired_time":1795464184}`,
		`{"channel":"app","out_contract_code":"pre-sign","plan_id":1,"user_display_name":"x"}`,
		`[]`, `null`, `"x"`, `{}`, `{"a":{"b":[1,{"c":"\udc00"}]}}`, ``,
	} {
		f.Add([]byte(seed))
	}
	s := startStack(f, stackOptions{})
	f.Fuzz(func(t *testing.T, body []byte) {
		s := fuzzView(s, t)
		codes := fuzzErrorCodes(t, s)
		before := fuzzRows(s)
		r := hostileDo(s, http.MethodPost, "/v1/contracts/pre-sign", appToken, "application/json", string(body))
		fuzzCheck(t, "pre-sign", r, codes, before, fuzzRows(s))
	})
}

// fuzzRoutes are every route's method and path, with {} where the fuzzed
// path segment goes.
var fuzzRoutes = []struct{ method, path string }{
	{"GET", "/v1/contracts/{}"}, {"GET", "/v1/contracts/{}/events"}, {"POST", "/v1/contracts/{}/sync"},
	{"POST", "/v1/contracts/{}/terminate"}, {"GET", "/v1/contracts"}, {"GET", "/v1/events"},
	{"POST", "/v1/contracts/pre-sign"}, {"GET", "/healthz"}, {"GET", "/readyz"}, {"GET", "/openapi.yaml"},
	{"GET", "/{}"}, {"DELETE", "/v1/contracts/{}"}, {"GET", "/v1/contracts/pre-sign"},
}

func FuzzRoutePathsAndQueries(f *testing.F) {
	seeds := []struct {
		route        uint8
		segment, qry string
	}{
		{0, "c1", ""}, {0, "%00", ""}, {0, "a%00b", ""}, {1, "%00", ""}, {2, "%00", ""}, {3, "%00", ""},
		{4, "", "sub_mchid=%00"}, {4, "", "channel=%00"}, {4, "", "channel=bogus"}, {4, "", "service_id=-5"},
		{4, "", "state=bogus&limit=0"}, {4, "", "created_from=2026-01-01T00:00:00%2B08:00"}, {4, "", "cursor=%ff"},
		{5, "", "after=abc&limit=501"}, {0, "%zz", ""}, {0, "%", ""}, {0, "a%2Fb", ""}, {10, "x", "a=%"},
		{12, "", ""}, {11, "c", ""}, {0, strings.Repeat("a", 300), ""}, {4, "", "sub_mchid=" + strings.Repeat("9", 40)},
	}
	for _, sd := range seeds {
		f.Add(sd.route, sd.segment, sd.qry)
	}
	s := startStack(f, stackOptions{})
	addr := strings.TrimPrefix(s.URL, "http://")
	f.Fuzz(func(t *testing.T, route uint8, segment, query string) {
		s := fuzzView(s, t)
		codes := fuzzErrorCodes(t, s)
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		target := strings.ReplaceAll(rt.path, "{}", segment)
		if query != "" {
			target += "?" + query
		}
		var body string
		if rt.method == "POST" {
			body = `{"note":"fuzz"}`
		}
		raw := rt.method + " " + target + " HTTP/1.1\r\nHost: contractd\r\nAuthorization: Bearer " + opsToken +
			"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
		before := fuzzRows(s)
		r, err := fuzzRaw(addr, raw)
		if err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		fuzzCheck(t, rt.method+" "+target, r, codes, before, fuzzRows(s))
	})
}

// fuzzRaw writes raw on a new connection and reads the first answer.
func fuzzRaw(addr, raw string) (response, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return response{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		return response{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

func FuzzNotificationPlaintext(f *testing.F) {
	type seed struct {
		event uint8
		plain string
	}
	for _, sd := range []seed{
		{0, `{"mchid":"MCH","appid":"APP","out_contract_code":"n1","contract_id":"wx1","plan_id":123,"openid":"o1","operate_time":"2026-01-01T00:00:00+08:00"}`},
		{1, `{"mchid":"MCH","appid":"APP","out_contract_code":"n2","contract_id":"wx2","plan_id":123,"openid":"o1","operate_time":"2026-01-01T00:00:00Z","contract_termination_mode":"USER"}`},
		{2, `{"mchid":"MCH","appid":"APP","out_contract_code":"n3","contract_id":"wx3","service_id":7,"openid":"o1","contract_signed_time":"2026-01-01T00:00:00+08:00","contract_state":"ENTRUST"}`},
		{3, `{"mchid":"MCH","out_contract_code":"n4","contract_id":"wx4","service_id":"7","contract_terminate_info":{"contract_termination_mode":"USER","contract_terminated_time":"2026-01-01T00:00:00Z"}}`},
		{0, `{"mchid":"MCH","out_contract_code":"a\u0000b","operate_time":"2026-01-01T00:00:00Z"}`},
		{0, `{"mchid":"MCH","out_contract_code":"a/b","operate_time":"2026-01-01T00:00:00Z"}`},
		{0, `{"mchid":"MCH","out_contract_code":"n5","openid":"\ud800","operate_time":"2026-01-01T00:00:00Z"}`},
		{0, `{"mchid":"MCH","out_contract_code":"n6","out_contract_code":"n7","operate_time":"2026-01-01T00:00:00Z"}`},
		{0, `{"mchid":"OTHER","out_contract_code":"n8","operate_time":"2026-01-01T00:00:00Z"}`},
		{0, `{"mchid":"MCH","out_contract_code":"n9","operate_time":"yesterday"}`},
		{0, `not json`}, {0, `{}`}, {0, ``},
	} {
		f.Add(sd.event, []byte(sd.plain))
	}
	s := startStack(f, stackOptions{})
	events := []string{"PAPAY.SIGN", "PAPAY.TERMINATE", "ENTRUST.SIGN", "ENTRUST.TERMINATE", "PAPAY.UNKNOWN"}
	f.Fuzz(func(t *testing.T, event uint8, plain []byte) {
		s := fuzzView(s, t)
		// The seeds name the merchant MCH: make them this stack's.
		text := strings.ReplaceAll(string(plain), `"MCH"`, `"`+s.Keys.MchID+`"`)
		text = strings.ReplaceAll(text, `"APP"`, `"`+s.Keys.AppID+`"`)
		body := hostileEnvelope(t, s.Keys, "fz-"+ntRandom(8), events[int(event)%len(events)], []byte(text))
		before := fuzzRows(s)
		r := hostilePostNotification(t, s, body, s.Keys.PlatformKey)
		after := fuzzRows(s)
		if r.Status >= 500 {
			t.Fatalf("notification answered %d: %s", r.Status, clipBody(r.Body))
		}
		if r.Status == http.StatusNoContent {
			return
		}
		if r.Status < 400 || after != before {
			t.Fatalf("notification answered %d and wrote %d rows: %s", r.Status, after-before, clipBody(r.Body))
		}
		var e struct{ Code, Message string }
		if err := json.Unmarshal(r.Body, &e); err != nil || e.Code != "FAIL" || e.Message == "" {
			t.Fatalf("notification answered %d without FAIL: %s", r.Status, clipBody(r.Body))
		}
	})
}
