package wechatpaysim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// control calls an unsigned control route and decodes a JSON answer into out (if not nil).
func (e *env) control(method, path, body string, out any) int {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func TestErrorFaults(t *testing.T) {
	e := newEnv(t)
	e.sim.SetFaults(Faults{ErrorCode: "SYSTEM_ERROR", ErrorCount: 2})
	for i, want := range []int{500, 500, 200} {
		a := e.call("POST", "/v3/global/papay/contracts/app-pre-entrust-sign", globalBody(t, "FAULT", nil))
		if a.status != want {
			t.Fatalf("call %d: %d %s, want %d", i+1, a.status, a.body, want)
		}
		if want == 500 && a.code(t) != "SYSTEM_ERROR" {
			t.Errorf("call %d code %s", i+1, a.code(t))
		}
	}
	if n := len(e.sim.Sessions()); n != 1 {
		t.Errorf("%d sessions; failed calls must change nothing", n)
	}
	reqs := e.sim.Requests()
	if len(reqs) != 3 || reqs[0].ErrorCode != "SYSTEM_ERROR" || !reqs[0].Verified || reqs[2].Status != 200 {
		t.Errorf("recorded %+v", reqs)
	}

	statusTests := []struct {
		code   string
		status int
		want   int
	}{
		{"SYSTEMERROR", 0, 500},
		{"PARAM_ERROR", 0, 400},
		{"FREQUENCY_LIMIT_EXCEED", 0, 429},
		{"INVALID_REQUEST", 0, 400},
		{"SYSTEM_ERROR", 503, 503},
	}
	for _, tt := range statusTests {
		e.sim.SetFaults(Faults{ErrorCode: tt.code, ErrorStatus: tt.status, ErrorCount: 1})
		if a := e.call("GET", "/v3/global/papay/contracts/1?appid=x", ""); a.status != tt.want || a.code(t) != tt.code {
			t.Errorf("%s/%d: %d %s, want %d", tt.code, tt.status, a.status, a.body, tt.want)
		}
	}

	e.sim.SetFaults(Faults{ErrorCode: "SYSTEM_ERROR", ErrorRate: 1, PathContains: "/terminate"})
	if a := e.call("GET", "/v3/global/papay/contracts/1?appid=x", ""); a.status != 403 {
		t.Errorf("fault applied outside path_contains: %d %s", a.status, a.body)
	}
	if a := e.call("POST", "/v3/global/papay/contracts/1/terminate", `{}`); a.status != 500 {
		t.Errorf("fault not applied on path_contains: %d %s", a.status, a.body)
	}

	e.sim.SetFaults(Faults{ErrorCode: "SYSTEM_ERROR", ErrorCount: 1})
	other := e.signer()
	other.serial = "0000"
	if a := e.send(other.request(t, "GET", e.srv.URL+"/v3/global/papay/contracts/1?appid=x", "")); a.status != 401 {
		t.Errorf("bad signature under a fault: %d", a.status)
	}
	if got := e.sim.CurrentFaults().ErrorCount; got != 1 {
		t.Errorf("a refused signature used up an injected error: %d left", got)
	}
}

func TestLatencyFault(t *testing.T) {
	e := newEnv(t)
	e.sim.SetFaults(Faults{LatencyMS: 120})
	start := time.Now()
	e.call("GET", "/v3/global/papay/contracts/1?appid=x", "")
	if d := time.Since(start); d < 120*time.Millisecond {
		t.Errorf("answer after %v, want at least 120ms", d)
	}
}

func TestTamperResponses(t *testing.T) {
	e := newEnv(t)
	e.sim.SetFaults(Faults{TamperResponses: true})
	for _, req := range []*http.Request{
		e.signer().request(t, "POST", e.srv.URL+"/v3/global/papay/contracts/app-pre-entrust-sign", globalBody(t, "TAMPER", nil)),
		e.signer().request(t, "GET", e.srv.URL+"/v3/global/papay/contracts/1?appid=x", ""),
	} {
		a, err := e.sendUnchecked(req)
		if err == nil {
			t.Errorf("tampered answer %d %s verified", a.status, a.body)
		}
		if !json.Valid(a.body) || !strings.Contains(string(a.body), `"tampered":true`) {
			t.Errorf("tampered body %s", a.body)
		}
	}
	e.sim.SetFaults(Faults{})
	c, err := e.sim.Sign(context.Background(), SignRequest{OutContractCode: "TAMPER"})
	if err != nil {
		t.Fatal(err)
	}
	e.sim.SetFaults(Faults{TamperResponses: true})
	req := e.signer().request(t, "POST", e.srv.URL+"/v3/global/papay/contracts/"+c.ContractID+"/terminate",
		`{"appid":"`+testAppID+`","termination_note":"n"}`)
	if a, err := e.sendUnchecked(req); err == nil || a.status != 204 {
		t.Errorf("tampered 204: %d, %v", a.status, err)
	}
}

func TestSignControl(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	e := newEnv(t, func(c *Config) { c.Now = clock.Now })
	old := e.preSign("CTL1")
	latest := e.preSign("CTL1")

	var c Contract
	if st := e.control("POST", "/sim/sign", `{"out_contract_code":"CTL1","openid":"oCHOSEN"}`, &c); st != 200 {
		t.Fatalf("sign by code: %d", st)
	}
	if c.SessionID != latest || c.OpenID != "ouFhd5X9s9WteC3eWRjXV3lea123" || c.State != StateSigned {
		t.Errorf("signed %+v; want session %s and the session's openid", c, latest)
	}
	var errAnswer map[string]string
	tests := []struct {
		body   string
		status int
		code   string
	}{
		{`{"session_id":"` + old + `"}`, 409, "CONTRACT_EXISTED"},
		{`{"session_id":"` + latest + `"}`, 409, "SESSION_USED"},
		{`{"session_id":"nope"}`, 404, "SESSION_NOT_FOUND"},
		{`{"out_contract_code":"NOPE"}`, 404, "SESSION_NOT_FOUND"},
		{`{}`, 404, "SESSION_NOT_FOUND"},
		{`{"unknown":1}`, 400, "BAD_REQUEST"},
	}
	for _, tt := range tests {
		errAnswer = nil
		if st := e.control("POST", "/sim/sign", tt.body, &errAnswer); st != tt.status || errAnswer["code"] != tt.code {
			t.Errorf("sign %s: %d %v, want %d %s", tt.body, st, errAnswer, tt.status, tt.code)
		}
	}

	// Sessions expire: app sessions after 2 hours by default.
	app := e.preSign("CTL2")
	clock.Advance(2*time.Hour + time.Second)
	if _, err := e.sim.Sign(context.Background(), SignRequest{SessionID: app}); !errors.Is(err, ErrSessionExpired) {
		t.Errorf("expired session: %v", err)
	}
	if st := e.control("POST", "/sim/sign", `{"session_id":"`+app+`"}`, &errAnswer); st != 409 || errAnswer["code"] != "SESSION_EXPIRED" {
		t.Errorf("expired session over HTTP: %d %v", st, errAnswer)
	}
	clock.Advance(-2*time.Hour - time.Second)

	var generated Contract
	e.call("POST", "/v3/global/papay/contracts/h5-pre-entrust-sign", globalBody(t, "CTL3", func(m map[string]any) { delete(m, "openid") }))
	if st := e.control("POST", "/sim/sign", `{"out_contract_code":"CTL3"}`, &generated); st != 200 || !strings.HasPrefix(generated.OpenID, "o") || len(generated.OpenID) != 28 {
		t.Errorf("generated openid: %d %+v", st, generated)
	}
	var fromReq Contract
	e.call("POST", "/v3/global/papay/contracts/h5-pre-entrust-sign", globalBody(t, "CTL4", func(m map[string]any) { delete(m, "openid") }))
	if e.control("POST", "/sim/sign", `{"out_contract_code":"CTL4","openid":"oFROMREQUEST"}`, &fromReq); fromReq.OpenID != "oFROMREQUEST" {
		t.Errorf("openid from the request: %+v", fromReq)
	}

	var terminated Contract
	if st := e.control("POST", "/sim/contracts/"+c.ContractID+"/terminate", "", &terminated); st != 200 ||
		terminated.State != StateTerminated || terminated.TerminationMode != TerminationUser || terminated.TerminatedTime.IsZero() {
		t.Errorf("terminate: %d %+v", st, terminated)
	}
	if st := e.control("POST", "/sim/contracts/"+c.ContractID+"/terminate", "", &errAnswer); st != 409 || errAnswer["code"] != "CONTRACT_NOT_SIGNED" {
		t.Errorf("terminate twice: %d %v", st, errAnswer)
	}
	if st := e.control("POST", "/sim/contracts/nope/terminate", "", &errAnswer); st != 404 || errAnswer["code"] != "CONTRACT_NOT_EXIST" {
		t.Errorf("terminate unknown: %d %v", st, errAnswer)
	}

	var contracts []Contract
	if st := e.control("GET", "/sim/contracts", "", &contracts); st != 200 || len(contracts) != 3 || contracts[0].ContractID != c.ContractID {
		t.Errorf("contracts: %d %+v", st, contracts)
	}
	var sessions []Session
	if e.control("GET", "/sim/sessions", "", &sessions); len(sessions) != 5 || sessions[1].ContractID != c.ContractID {
		t.Errorf("sessions: %+v", sessions)
	}
	var reqs []map[string]any
	if e.control("GET", "/sim/requests", "", &reqs); len(reqs) != 5 || !strings.Contains(reqs[0]["body"].(string), `"out_contract_code":"CTL1"`) ||
		reqs[0]["verified"] != true || reqs[0]["status"] != float64(200) {
		t.Errorf("requests: %v", reqs)
	}
	var deliveries []Delivery
	waitFor(t, "deliveries", func() bool { return len(e.sim.Deliveries()) == 4 })
	if e.control("GET", "/sim/deliveries", "", &deliveries); len(deliveries) != 4 || deliveries[3].EventType != "PAPAY.TERMINATE" {
		t.Errorf("deliveries: %+v", deliveries)
	}
}

func TestFaultsControl(t *testing.T) {
	e := newEnv(t)
	var f Faults
	if st := e.control("PUT", "/sim/faults", `{"error_code":"SYSTEM_ERROR","error_count":2,"duplicate_deliveries":1}`, &f); st != 200 || f.ErrorCount != 2 {
		t.Fatalf("put: %d %+v", st, f)
	}
	if got := e.sim.CurrentFaults(); got.ErrorCode != "SYSTEM_ERROR" || got.DuplicateDeliveries != 1 {
		t.Errorf("faults %+v", got)
	}
	bad := []string{
		`{"error_rate":2,"error_code":"X"}`, `{"error_count":-1}`, `{"error_count":1}`, `{"error_status":200,"error_code":"X"}`,
		`{"latency_ms":-5}`, `{"duplicate_deliveries":100}`, `{"nope":true}`, `not json`,
	}
	for _, b := range bad {
		var ans map[string]string
		if st := e.control("PUT", "/sim/faults", b, &ans); st != 400 || ans["code"] != "BAD_REQUEST" {
			t.Errorf("put %s: %d %v", b, st, ans)
		}
	}
	e.control("GET", "/sim/faults", "", &f)
	if f.ErrorCount != 2 {
		t.Errorf("a rejected PUT changed faults: %+v", f)
	}
	if st := e.control("DELETE", "/sim/faults", "", nil); st != 204 || e.sim.CurrentFaults() != (Faults{}) {
		t.Errorf("delete: %d %+v", st, e.sim.CurrentFaults())
	}
	e.sim.SetFaults(Faults{LatencyMS: 1})
	e.signed("RESET")
	waitFor(t, "delivery", func() bool { return len(e.sim.Deliveries()) == 1 })
	if st := e.control("POST", "/sim/reset", "", nil); st != 204 {
		t.Errorf("reset: %d", st)
	}
	if len(e.sim.Requests()) != 0 || len(e.sim.Deliveries()) != 0 || e.sim.CurrentFaults() != (Faults{}) || len(e.sim.Contracts()) != 1 {
		t.Errorf("after reset: %d requests, %d deliveries, faults %+v, %d contracts",
			len(e.sim.Requests()), len(e.sim.Deliveries()), e.sim.CurrentFaults(), len(e.sim.Contracts()))
	}
	var health map[string]string
	if st := e.control("GET", "/sim/healthz", "", &health); st != 200 || health["status"] != "ok" {
		t.Errorf("healthz: %d %v", st, health)
	}
}

func TestSignPage(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	e := newEnv(t, func(c *Config) { c.Now = clock.Now })
	a := e.call("POST", "/v3/global/papay/contracts/h5-pre-entrust-sign", globalBody(t, "PAGE1", func(m map[string]any) {
		m["user_display_name"] = "<script>x</script>"
	}))
	signURL, _ := a.json(t)["sign_url"].(string)
	get := func(u string) (int, string) {
		resp, err := e.srv.Client().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	st, page := get(signURL)
	if st != 200 || !strings.Contains(page, `id="agree"`) || !strings.Contains(page, "PAGE1") ||
		!strings.Contains(page, "123") || strings.Contains(page, "<script>x") {
		t.Fatalf("sign page %d:\n%s", st, page)
	}
	resp, err := e.srv.Client().PostForm(signURL, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cs := e.sim.Contracts()
	if resp.StatusCode != 200 || len(cs) != 1 || !strings.Contains(string(b), cs[0].ContractID) || cs[0].Channel != "h5" {
		t.Fatalf("agree: %d %+v\n%s", resp.StatusCode, cs, b)
	}
	if st, page := get(signURL); st != 200 || strings.Contains(page, `id="agree"`) || !strings.Contains(page, cs[0].ContractID) {
		t.Errorf("page after signing %d:\n%s", st, page)
	}
	resp, err = e.srv.Client().PostForm(signURL, url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 409 {
		t.Errorf("second agree: %d", resp.StatusCode)
	}
	if st, _ := get(e.srv.URL + "/sim/sign-page/nope"); st != 404 {
		t.Errorf("unknown session page: %d", st)
	}
	a = e.call("POST", "/v3/global/papay/contracts/web-pre-entrust-sign", globalBody(t, "PAGE2", nil))
	showURL, _ := a.json(t)["show_code_url"].(string)
	clock.Advance(11 * time.Minute)
	if st, page := get(showURL); st != 200 || !strings.Contains(page, "expired") || strings.Contains(page, `id="agree"`) {
		t.Errorf("expired session page %d:\n%s", st, page)
	}
}

// GET /sim/ lists every control route the mux serves.
func TestControlIndexListsTheControlRoutes(t *testing.T) {
	e := newEnv(t)
	var index struct {
		Routes []ControlRoute `json:"routes"`
	}
	if st := e.control("GET", "/sim/", "", &index); st != 200 {
		t.Fatalf("GET /sim/: %d", st)
	}
	if len(index.Routes) != len(ControlRoutes) {
		t.Fatalf("index lists %d routes, want %d", len(index.Routes), len(ControlRoutes))
	}
	for _, r := range index.Routes {
		if r.Does == "" {
			t.Errorf("%s %s: no description", r.Method, r.Path)
		}
		// Every listed route is served: a GET without parameters
		// answers 200; any other route is at least routed (not 404 or 405).
		if strings.Contains(r.Path, "{") || r.Method != "GET" {
			continue
		}
		if st := e.control("GET", r.Path, "", nil); st != 200 {
			t.Errorf("GET %s: %d, want 200", r.Path, st)
		}
	}
	// The other routes are served: they answer the simulator's own JSON
	// (or page), not the mux's plain "404 page not found".
	for _, r := range []struct{ method, path string }{{"POST", "/sim/sign"}, {"POST", "/sim/contracts/nope/terminate"}, {"POST", "/sim/sign-page/nope"}} {
		resp, err := e.srv.Client().Post(e.srv.URL+r.path, "application/json", strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 405 || strings.Contains(string(b), "404 page not found") {
			t.Errorf("%s %s: %d %s, the route is not served", r.method, r.path, resp.StatusCode, b)
		}
	}
}

// With PublicURL set, the sign page URLs pre-sign answers are under it,
// whatever host the merchant reached the simulator at.
func TestPublicURLIsTheBaseOfSignPageURLs(t *testing.T) {
	for _, tt := range []struct {
		public, want string
	}{
		{"", "http://127.0.0.1:"},
		{"http://localhost:18090/", "http://localhost:18090/sim/sign-page/"},
	} {
		e := newEnv(t, func(c *Config) { c.PublicURL = tt.public })
		for _, kind := range []struct{ path, field string }{{"h5", "sign_url"}, {"jsapi", "sign_url"}, {"web", "show_code_url"}} {
			code := "PUB" + kind.path
			body := globalBody(t, code, nil)
			if kind.path != "jsapi" {
				body = globalBody(t, code, func(m map[string]any) { delete(m, "openid") })
			}
			a := e.call("POST", "/v3/global/papay/contracts/"+kind.path+"-pre-entrust-sign", body)
			u, _ := a.json(t)[kind.field].(string)
			if !strings.HasPrefix(u, tt.want) {
				t.Errorf("public %q, %s: %s = %q, want it under %q", tt.public, kind.path, kind.field, u, tt.want)
			}
		}
	}
	if _, err := New(func() Config { c := keys(t).SimConfig(); c.PublicURL = "ftp://x"; return c }()); err == nil {
		t.Error("New accepted PublicURL ftp://x")
	}
}
