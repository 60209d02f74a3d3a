package main

// End-to-end acceptance tests of POST /v1/contracts/pre-sign (issue 4): the
// real server, a private Postgres schema and the WeChat Pay simulator, wired
// by startStack.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contractd/contractd/wechatpaysim"
)

const (
	presignPath      = "/v1/contracts/pre-sign"
	presignNotifyURL = "https://contractd.localhost/v1/notifications/wechatpay"
	presignSubMchID  = "1900000109"
	presignSubAppID  = "wxsub00000000001"
)

// presignStackFor returns s with its helpers failing t, so that subtests
// report on themselves.
func presignStackFor(s *stack, t *testing.T) *stack {
	c := *s
	c.t = t
	return &c
}

// presignPapay is a valid papay request for channel ch.
func presignPapay(ch, code string) map[string]any {
	return map[string]any{"product": "papay", "channel": ch, "out_contract_code": code,
		"plan_id": 123, "user_display_name": "Zhang San"}
}

// presignExempt is a valid password_exempt request.
func presignExempt(code string) map[string]any {
	return map[string]any{"product": "password_exempt", "channel": "mini_program", "out_contract_code": code,
		"service_id": 12535, "contract_display_account": "微信代扣用户A", "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}
}

// presignWith copies m and applies edits.
func presignWith(m map[string]any, edits ...func(map[string]any)) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for _, e := range edits {
		e(out)
	}
	return out
}

// presignAt formats now+d as RFC3339 in China time, the way callers send it.
func presignAt(d time.Duration) string {
	return time.Now().Add(d).In(time.FixedZone("CST", 8*3600)).Format(time.RFC3339)
}

type presignAnswer struct {
	Contract map[string]any `json:"contract"`
	Launch   map[string]any `json:"launch"`
}

type presignError struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Detail  map[string]any `json:"detail"`
}

// fields lists the field names of detail.fields.
func (e presignError) fields() []string {
	list, _ := e.Detail["fields"].([]any)
	var out []string
	for _, f := range list {
		if m, ok := f.(map[string]any); ok {
			name, _ := m["field"].(string)
			out = append(out, name)
		}
	}
	return out
}

// presignExpectError checks an error answer's status and code and returns it decoded.
func presignExpectError(t *testing.T, r response, status int, code string) presignError {
	t.Helper()
	if r.Header.Get("X-Request-Id") == "" {
		t.Errorf("answer %d carries no X-Request-Id", r.Status)
	}
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	var e presignError
	r.JSON(t, &e)
	if e.Code != code || e.Message == "" {
		t.Fatalf("error %q (message %q), want code %s: %s", e.Code, e.Message, code, r.Body)
	}
	return e
}

// presignCalls counts the pre-sign requests the simulator received.
func presignCalls(s *stack) int {
	n := 0
	for _, r := range s.Sim.Requests() {
		if strings.Contains(r.Path, "pre-entrust-sign") {
			n++
		}
	}
	return n
}

type presignEvent struct{ From, To, Event, Source string }

// presignHistory reads a contract's history rows, oldest first.
func presignHistory(s *stack, subMchID, code string) []presignEvent {
	s.t.Helper()
	rows, err := s.DB.Pool.Query(context.Background(), `SELECT from_state, to_state, event, source FROM contract_events
		WHERE sub_mchid = $1 AND out_contract_code = $2 ORDER BY id`, subMchID, code)
	if err != nil {
		s.t.Fatal(err)
	}
	defer rows.Close()
	var out []presignEvent
	for rows.Next() {
		var e presignEvent
		if err := rows.Scan(&e.From, &e.To, &e.Event, &e.Source); err != nil {
			s.t.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		s.t.Fatal(err)
	}
	return out
}

// presignGet reads a contract through the API with the app token.
func presignGet(s *stack, subMchID, code string) map[string]any {
	s.t.Helper()
	path := "/v1/contracts/" + code
	if subMchID != "" {
		path += "?sub_mchid=" + url.QueryEscape(subMchID)
	}
	r := s.do(http.MethodGet, path, appToken, nil)
	if r.Status != http.StatusOK {
		s.t.Fatalf("GET %s: %d %s", path, r.Status, r.Body)
	}
	return r.Map(s.t)
}

// presignSimSessions returns the simulator's sessions for a contract key.
func presignSimSessions(s *stack, subMchID, code string) []wechatpaysim.Session {
	var out []wechatpaysim.Session
	for _, sess := range s.Sim.Sessions() {
		if sess.OutContractCode == code && sess.SubMchID == subMchID {
			out = append(out, sess)
		}
	}
	return out
}

// 1. Every product x channel x mode.

func TestPreSignEveryProductChannelAndMode(t *testing.T) {
	t.Parallel()
	type combo struct {
		name, product, channel string
		// extra: channel-specific optional fields; subAppID: institutional sub_appid ("" for none).
		extra    map[string]any
		subAppID string
	}
	expiresApp := presignAt(time.Hour)
	combos := []combo{
		{"papay_app", "papay", "app", map[string]any{"openid": "oUser1", "user_client_ip": "119.145.83.6",
			"return_url": "https://merchant.example/back", "expired_time": expiresApp}, presignSubAppID},
		{"papay_mini_program", "papay", "mini_program", map[string]any{"openid": "oUser2", "user_client_ip": "119.145.83.6"}, ""},
		{"papay_h5", "papay", "h5", map[string]any{"user_client_ip": "2001:db8::1", "return_appid": "wxreturn0000001"}, presignSubAppID},
		{"papay_jsapi", "papay", "jsapi", map[string]any{"openid": "oUser4", "return_url": "https://merchant.example/back"}, ""},
		{"papay_web", "papay", "web", map[string]any{"return_url": "https://merchant.example/back"}, presignSubAppID},
		{"password_exempt_mini_program", "password_exempt", "mini_program", nil, presignSubAppID},
	}
	for _, mode := range []string{"common", "institutional"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			inst := mode == "institutional"
			base := startStack(t, stackOptions{Mode: mode})
			for i, cb := range combos {
				t.Run(cb.name, func(t *testing.T) {
					s := presignStackFor(base, t)
					s.Sim.Reset()
					code := fmt.Sprintf("%s-%d", mode[:4], i)
					var req map[string]any
					if cb.product == "password_exempt" {
						req = presignExempt(code)
					} else {
						req = presignWith(presignPapay(cb.channel, code), func(m map[string]any) {
							for k, v := range cb.extra {
								m[k] = v
							}
						})
					}
					subMchID := ""
					if inst {
						subMchID = presignSubMchID
						req["sub_mchid"] = subMchID
						if cb.subAppID != "" {
							req["sub_appid"] = cb.subAppID
							if cb.product == "password_exempt" {
								req["sub_openid"] = "oSubUser"
							}
						}
					}
					r := s.do(http.MethodPost, presignPath, appToken, req)
					if r.Status != http.StatusCreated {
						t.Fatalf("pre-sign: %d %s", r.Status, r.Body)
					}
					var a presignAnswer
					r.JSON(t, &a)

					// The contract in the answer.
					for k, want := range map[string]any{"out_contract_code": code, "sub_mchid": subMchID,
						"product": cb.product, "channel": cb.channel, "state": "session_issued"} {
						if a.Contract[k] != want {
							t.Errorf("contract.%s = %v, want %v", k, a.Contract[k], want)
						}
					}
					expStr, _ := a.Contract["session_expires_at"].(string)
					exp, err := time.Parse(time.RFC3339Nano, expStr)
					if err != nil {
						t.Fatalf("contract.session_expires_at %q: %v", expStr, err)
					}

					// The simulator's own record of the session.
					sessions := presignSimSessions(s, subMchID, code)
					if len(sessions) != 1 {
						t.Fatalf("simulator has %d sessions for %s, want 1", len(sessions), code)
					}
					sess := sessions[0]
					if sess.Channel != cb.channel || sess.NotifyURL != presignNotifyURL {
						t.Errorf("sim session channel %q notify %q", sess.Channel, sess.NotifyURL)
					}
					if d := sess.ExpiresAt.Sub(exp); d < -5*time.Second || d > 5*time.Second {
						t.Errorf("session_expires_at %v, simulator's session expires %v", exp, sess.ExpiresAt)
					}
					if cb.extra["expired_time"] != nil {
						want, _ := time.Parse(time.RFC3339, expiresApp)
						if !exp.Equal(want) || !sess.ExpiresAt.Equal(want) {
							t.Errorf("expired_time %s: contract expires %v, simulator %v", expiresApp, exp, sess.ExpiresAt)
						}
					}
					signPage := s.SimURL + "/sim/sign-page/" + url.PathEscape(sess.ID)
					var want map[string]any
					switch {
					case cb.product == "password_exempt":
						want = map[string]any{"type": "mini_program", "appid": a.Launch["appid"],
							"path": "pages/index/index?pre_entrustweb_id=" + sess.ID, "pre_entrustweb_id": sess.ID}
						if id, _ := a.Launch["appid"].(string); !strings.HasPrefix(id, "wx") {
							t.Errorf("launch.appid = %q, want the signing mini program's appid", id)
						}
					case cb.channel == "app":
						want = map[string]any{"type": "app_sdk", "business_type": "wxpayOverseaEntrustAuthorization",
							"query": "sessionId=" + sess.ID, "ext_info": `{"miniProgramType":0}`}
					case cb.channel == "mini_program":
						want = map[string]any{"type": "mini_program_session", "session_id": sess.ID}
					case cb.channel == "h5", cb.channel == "jsapi":
						want = map[string]any{"type": "redirect", "url": signPage}
					case cb.channel == "web":
						want = map[string]any{"type": "qr_code", "url": signPage}
					}
					if !reflect.DeepEqual(a.Launch, want) {
						t.Errorf("launch = %v\nwant     %v", a.Launch, want)
					}

					// Exactly one, correctly signed request, carrying the configured ids.
					reqs := s.Sim.Requests()
					if len(reqs) != 1 {
						t.Fatalf("simulator received %d requests, want 1: %+v", len(reqs), reqs)
					}
					rec := reqs[0]
					if !rec.Verified || rec.Status != http.StatusOK || rec.Method != http.MethodPost {
						t.Errorf("request %s %s verified=%v status=%d code=%s", rec.Method, rec.Path, rec.Verified, rec.Status, rec.ErrorCode)
					}
					wantPath := "/v3/global/papay/contracts/" + map[string]string{"app": "app", "mini_program": "miniprogram",
						"h5": "h5", "jsapi": "jsapi", "web": "web"}[cb.channel] + "-pre-entrust-sign"
					if cb.product == "password_exempt" {
						variant := "normal"
						if inst {
							variant = "service-provider"
						}
						wantPath = "/v3/password-exempt-contract/contracts/" + variant + "/pre-entrust-sign/mini-program"
					}
					if rec.Path != wantPath {
						t.Errorf("path %s, want %s", rec.Path, wantPath)
					}
					var body map[string]any
					if err := json.Unmarshal(rec.Body, &body); err != nil {
						t.Fatalf("request body %s: %v", rec.Body, err)
					}
					notifyKey := "success_notify_url"
					if cb.product == "password_exempt" {
						notifyKey = "notify_url"
					}
					if body[notifyKey] != presignNotifyURL {
						t.Errorf("%s = %v, want %s", notifyKey, body[notifyKey], presignNotifyURL)
					}
					if body["out_contract_code"] != code {
						t.Errorf("out_contract_code = %v", body["out_contract_code"])
					}
					if inst {
						if v, ok := body["appid"]; ok {
							t.Errorf("institutional request carries appid %v: %s", v, rec.Body)
						}
						if body["sp_appid"] != s.Env["WECHATPAY_SP_APPID"] || body["sub_mchid"] != subMchID {
							t.Errorf("sp_appid %v sub_mchid %v, want %s %s", body["sp_appid"], body["sub_mchid"], s.Env["WECHATPAY_SP_APPID"], subMchID)
						}
						if got, _ := body["sub_appid"].(string); got != cb.subAppID {
							t.Errorf("sub_appid = %q, want %q", got, cb.subAppID)
						}
						if sess.SPAppID != s.Env["WECHATPAY_SP_APPID"] || sess.AppID != "" {
							t.Errorf("sim session sp_appid %q appid %q", sess.SPAppID, sess.AppID)
						}
					} else {
						if body["appid"] != s.Keys.AppID {
							t.Errorf("appid = %v, want %s", body["appid"], s.Keys.AppID)
						}
						for _, k := range []string{"sp_appid", "sub_mchid", "sub_appid"} {
							if v, ok := body[k]; ok {
								t.Errorf("common-mode request carries %s %v", k, v)
							}
						}
						if sess.AppID != s.Keys.AppID || sess.SPAppID != "" {
							t.Errorf("sim session appid %q sp_appid %q", sess.AppID, sess.SPAppID)
						}
					}

					// One contract row, session_issued, with one history row.
					if n := s.count(`SELECT count(*) FROM contracts WHERE sub_mchid = $1 AND out_contract_code = $2 AND state = 'session_issued'`, subMchID, code); n != 1 {
						t.Errorf("%d session_issued rows, want 1", n)
					}
					h := presignHistory(s, subMchID, code)
					if len(h) != 1 || h[0] != (presignEvent{"created", "session_issued", "issue_session", "presign"}) {
						t.Errorf("history %+v, want one issue_session (created -> session_issued, presign)", h)
					}
				})
			}
		})
	}
}

// 2. Concurrency, repeats and conflicts.

type presignRaw struct {
	status int
	body   []byte
	err    error
}

func presignPost(t testing.TB, client *http.Client, base string, body []byte) presignRaw {
	r, err := send(t, base, request{Method: http.MethodPost, Path: presignPath, Token: appToken, Body: body, Client: client})
	return presignRaw{status: r.Status, body: r.Body, err: err}
}

func TestPreSignConcurrentIdenticalRequestsOpenOneSession(t *testing.T) {
	t.Parallel()
	presignConcurrentIdenticalRequestsOpenOneSession(t, startStack(t, stackOptions{}))
}

// presignConcurrentIdenticalRequestsOpenOneSession sends 50 identical
// pre-signs at once: one 201, 49 200s with the same launch, one call to
// WeChat, one row, one history row.
func presignConcurrentIdenticalRequestsOpenOneSession(t *testing.T, s *stack) {
	const n = 50
	body, _ := json.Marshal(presignPapay("app", "race-1"))
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	defer client.CloseIdleConnections()
	start := make(chan struct{})
	results := make([]presignRaw, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = presignPost(t, client, s.URL, body)
		}()
	}
	close(start)
	wg.Wait()

	statuses := map[int]int{}
	var launches []map[string]any
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		statuses[r.status]++
		var a presignAnswer
		if err := json.Unmarshal(r.body, &a); err != nil || a.Launch == nil {
			t.Errorf("request %d: %d %s", i, r.status, r.body)
			continue
		}
		launches = append(launches, a.Launch)
	}
	if statuses[http.StatusCreated] != 1 || statuses[http.StatusOK] != n-1 {
		t.Errorf("statuses %v, want one 201 and %d 200", statuses, n-1)
	}
	for i, l := range launches {
		if !reflect.DeepEqual(l, launches[0]) {
			t.Errorf("answer %d launch %v differs from %v", i, l, launches[0])
		}
	}
	if c := presignCalls(s); c != 1 {
		t.Errorf("simulator received %d pre-sign calls, want 1", c)
	}
	if sess := presignSimSessions(s, "", "race-1"); len(sess) != 1 {
		t.Errorf("simulator opened %d sessions, want 1", len(sess))
	} else if len(launches) > 0 && launches[0]["query"] != "sessionId="+sess[0].ID {
		t.Errorf("launch %v is not the simulator's session %s", launches[0], sess[0].ID)
	}
	if c := s.count(`SELECT count(*) FROM contracts WHERE out_contract_code = 'race-1'`); c != 1 {
		t.Errorf("%d contract rows, want 1", c)
	}
	if c := s.count(`SELECT count(*) FROM contract_events WHERE out_contract_code = 'race-1'`); c != 1 {
		t.Errorf("%d history rows, want 1", c)
	}
}

func TestPreSignRepeatsAndConflicts(t *testing.T) {
	t.Parallel()
	base := startStack(t, stackOptions{})
	open := func(s *stack, req map[string]any) presignAnswer {
		s.t.Helper()
		r := s.do(http.MethodPost, presignPath, appToken, req)
		if r.Status != http.StatusCreated {
			s.t.Fatalf("first pre-sign: %d %s", r.Status, r.Body)
		}
		var a presignAnswer
		r.JSON(s.t, &a)
		return a
	}

	t.Run("identical request later answers 200 without a call", func(t *testing.T) {
		s := presignStackFor(base, t)
		req := presignPapay("mini_program", "again-1")
		first := open(s, req)
		calls := len(s.Sim.Requests())
		r := s.do(http.MethodPost, presignPath, appToken, req)
		if r.Status != http.StatusOK {
			t.Fatalf("repeat: %d %s, want 200", r.Status, r.Body)
		}
		var a presignAnswer
		r.JSON(t, &a)
		if !reflect.DeepEqual(a.Launch, first.Launch) || a.Contract["state"] != "session_issued" {
			t.Errorf("repeat answered %v (state %v), first %v", a.Launch, a.Contract["state"], first.Launch)
		}
		if got := len(s.Sim.Requests()); got != calls {
			t.Errorf("repeat made %d calls to WeChat", got-calls)
		}
		if h := presignHistory(s, "", "again-1"); len(h) != 1 {
			t.Errorf("history %+v, want one row", h)
		}
	})

	t.Run("different parameters on an open session is 409 INVALID_STATE without a call", func(t *testing.T) {
		s := presignStackFor(base, t)
		req := presignPapay("app", "differ-1")
		open(s, req)
		calls := len(s.Sim.Requests())
		for name, other := range map[string]map[string]any{
			"display name": presignWith(req, func(m map[string]any) { m["user_display_name"] = "Li Si" }),
			"plan":         presignWith(req, func(m map[string]any) { m["plan_id"] = 124 }),
			"channel":      presignWith(req, func(m map[string]any) { m["channel"] = "jsapi" }),
		} {
			r := s.do(http.MethodPost, presignPath, appToken, other)
			if r.Status != http.StatusConflict {
				t.Errorf("%s changed: %d %s, want 409", name, r.Status, r.Body)
				continue
			}
			presignExpectError(t, r, http.StatusConflict, "INVALID_STATE")
		}
		if got := len(s.Sim.Requests()); got != calls {
			t.Errorf("conflicting requests made %d calls to WeChat", got-calls)
		}
		if h := presignHistory(s, "", "differ-1"); len(h) != 1 {
			t.Errorf("history %+v, want one row", h)
		}
	})

	t.Run("signed contract is 409 CONTRACT_EXISTED without a call", func(t *testing.T) {
		s := presignStackFor(base, t)
		req := presignPapay("app", "signed-1")
		open(s, req)
		if _, err := s.Sim.Sign(t.Context(), wechatpaysim.SignRequest{OutContractCode: "signed-1"}); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "contract signed", func() bool {
			return s.count(`SELECT count(*) FROM contracts WHERE out_contract_code = 'signed-1' AND state = 'signed'`) == 1
		})
		calls := len(s.Sim.Requests())
		for _, again := range []map[string]any{req, presignWith(req, func(m map[string]any) { m["user_display_name"] = "Li Si" })} {
			r := s.do(http.MethodPost, presignPath, appToken, again)
			presignExpectError(t, r, http.StatusConflict, "CONTRACT_EXISTED")
		}
		if got := len(s.Sim.Requests()); got != calls {
			t.Errorf("pre-sign of a signed contract made %d calls to WeChat", got-calls)
		}
		if c := presignGet(s, "", "signed-1"); c["state"] != "signed" {
			t.Errorf("state %v, want signed", c["state"])
		}
	})

	t.Run("session past its expiry can be pre-signed again", func(t *testing.T) {
		s := presignStackFor(base, t)
		req := presignPapay("app", "expired-1")
		first := open(s, req)
		if n := s.count(`WITH u AS (UPDATE contracts SET session_expires_at = now() - interval '1 minute'
			WHERE out_contract_code = 'expired-1' RETURNING 1) SELECT count(*) FROM u`); n != 1 {
			t.Fatalf("expired %d rows", n)
		}
		calls := presignCalls(s)
		r := s.do(http.MethodPost, presignPath, appToken, req)
		if r.Status != http.StatusCreated {
			t.Fatalf("pre-sign after expiry: %d %s, want 201", r.Status, r.Body)
		}
		var a presignAnswer
		r.JSON(t, &a)
		if reflect.DeepEqual(a.Launch, first.Launch) || a.Contract["state"] != "session_issued" {
			t.Errorf("second session %v (state %v), first %v", a.Launch, a.Contract["state"], first.Launch)
		}
		if got := presignCalls(s) - calls; got != 1 {
			t.Errorf("%d pre-sign calls, want 1", got)
		}
		want := []presignEvent{
			{"created", "session_issued", "issue_session", "presign"},
			{"session_issued", "expired", "expire", "presign"},
			{"expired", "session_issued", "issue_session", "presign"},
		}
		if h := presignHistory(s, "", "expired-1"); !reflect.DeepEqual(h, want) {
			t.Errorf("history %+v\nwant    %+v", h, want)
		}
	})
}

// 3. Field rules and request errors.

type presignRule struct {
	name  string
	inst  bool // institutional mode
	req   func(code string) any
	field string
}

// presignRules mirrors domain/presign_test.go's table (and the rules of
// domain/presign.go it leaves out), sent through HTTP.
func presignRules() []presignRule {
	long := func(n int) string { return strings.Repeat("a", n) }
	papay := func(ch string, edits ...func(map[string]any)) func(string) any {
		return func(code string) any { return presignWith(presignPapay(ch, code), edits...) }
	}
	exempt := func(edits ...func(map[string]any)) func(string) any {
		return func(code string) any { return presignWith(presignExempt(code), edits...) }
	}
	inst := func(ch string, edits ...func(map[string]any)) func(string) any {
		return papay(ch, append([]func(map[string]any){func(m map[string]any) { m["sub_mchid"] = presignSubMchID }}, edits...)...)
	}
	set := func(k string, v any) func(map[string]any) { return func(m map[string]any) { m[k] = v } }
	del := func(k string) func(map[string]any) { return func(m map[string]any) { delete(m, k) } }
	// rawName sends user_display_name (or contract_display_account) as raw bytes, which
	// json.Marshal would otherwise make valid UTF-8.
	rawName := func(build func(string) map[string]any, key string, raw string) func(string) any {
		return func(code string) any {
			b, _ := json.Marshal(presignWith(build(code), set(key, "@RAW@")))
			return bytes.Replace(b, []byte("@RAW@"), []byte(raw), 1)
		}
	}
	return []presignRule{
		{"unknown product", false, papay("app", set("product", "loan")), "product"},
		{"missing channel", false, papay("app", del("channel")), "channel"},
		{"unknown channel", false, papay("fax"), "channel"},
		{"password_exempt on app", false, exempt(set("channel", "app")), "channel"},
		{"missing code", false, papay("app", del("out_contract_code")), "out_contract_code"},
		{"code too long", false, papay("app", set("out_contract_code", long(33))), "out_contract_code"},
		{"code with slash", false, papay("app", set("out_contract_code", "a/b")), "out_contract_code"},
		{"code with space", false, papay("app", set("out_contract_code", "a b")), "out_contract_code"},
		{"code with question mark", false, papay("app", set("out_contract_code", "a?b")), "out_contract_code"},
		{"code with hash", false, papay("app", set("out_contract_code", "a#b")), "out_contract_code"},
		{"code with percent", false, papay("app", set("out_contract_code", "a%2Fb")), "out_contract_code"},
		{"code not ascii", false, papay("app", set("out_contract_code", "合同1")), "out_contract_code"},
		{"missing plan_id", false, papay("app", del("plan_id")), "plan_id"},
		{"zero plan_id", false, papay("app", set("plan_id", 0)), "plan_id"},
		{"negative plan_id", false, papay("app", set("plan_id", -5)), "plan_id"},
		{"missing display name", false, papay("app", del("user_display_name")), "user_display_name"},
		{"display name too long", false, papay("app", set("user_display_name", strings.Repeat("张", 33))), "user_display_name"},
		{"display name emoji", false, papay("app", set("user_display_name", "Zhang 😀")), "user_display_name"},
		{"display name control char", false, papay("app", set("user_display_name", "Zh\x00ang")), "user_display_name"},
		{"display name DEL", false, papay("app", set("user_display_name", "Zh\x7fang")), "user_display_name"},
		{"display name invalid utf8", false, rawName(func(c string) map[string]any { return presignPapay("app", c) }, "user_display_name", "\xff\xfe"), "user_display_name"},
		{"service_id on papay", false, papay("app", set("service_id", 1)), "service_id"},
		{"display account on papay", false, papay("app", set("contract_display_account", "x")), "contract_display_account"},
		{"openid too long", false, papay("app", set("openid", long(129))), "openid"},
		{"openid on h5", false, papay("h5", set("openid", "o")), "openid"},
		{"openid on web", false, papay("web", set("openid", "o")), "openid"},
		{"client ip on jsapi", false, papay("jsapi", set("user_client_ip", "1.2.3.4")), "user_client_ip"},
		{"client ip on web", false, papay("web", set("user_client_ip", "1.2.3.4")), "user_client_ip"},
		{"client ip not an ip", false, papay("app", set("user_client_ip", "localhost")), "user_client_ip"},
		{"client ip too long", false, papay("app", set("user_client_ip", long(33))), "user_client_ip"},
		{"return_url on h5", false, papay("h5", set("return_url", "https://a.b/c")), "return_url"},
		{"return_url on mini_program", false, papay("mini_program", set("return_url", "https://a.b/c")), "return_url"},
		{"return_url relative", false, papay("web", set("return_url", "/back")), "return_url"},
		{"return_url not http", false, papay("web", set("return_url", "ftp://a.b/c")), "return_url"},
		{"return_url too long", false, papay("web", set("return_url", "https://a.b/"+long(250))), "return_url"},
		{"return_appid on app", false, papay("app", set("return_appid", "wx1")), "return_appid"},
		{"return_appid on web", false, papay("web", set("return_appid", "wx1")), "return_appid"},
		{"return_appid too long", false, papay("h5", set("return_appid", long(33))), "return_appid"},
		{"expired_time not rfc3339", false, papay("app", set("expired_time", "2026-11-22 13:29:35")), "expired_time"},
		{"expired_time too soon", false, papay("app", set("expired_time", presignAt(4*time.Minute))), "expired_time"},
		{"expired_time exactly 5m", false, papay("app", set("expired_time", presignAt(5*time.Minute))), "expired_time"},
		// RFC3339 drops sub-seconds, so the late boundaries keep a few seconds' margin.
		{"expired_time past 2h app", false, papay("app", set("expired_time", presignAt(2*time.Hour+5*time.Second))), "expired_time"},
		{"expired_time 11m on h5", false, papay("h5", set("expired_time", presignAt(11*time.Minute))), "expired_time"},
		{"expired_time 10m on web", false, papay("web", set("expired_time", presignAt(10*time.Minute+5*time.Second))), "expired_time"},
		{"expired_time in the past", false, papay("mini_program", set("expired_time", presignAt(-time.Hour))), "expired_time"},
		{"sub_mchid in common mode", false, papay("app", set("sub_mchid", "1")), "sub_mchid"},
		{"sub_appid in common mode", false, papay("app", set("sub_appid", "wx")), "sub_appid"},
		{"missing sub_mchid institutional", true, papay("app"), "sub_mchid"},
		{"sub_mchid too long", true, inst("app", set("sub_mchid", long(33))), "sub_mchid"},
		{"sub_mchid with slash", true, inst("app", set("sub_mchid", "19/00")), "sub_mchid"},
		{"sub_appid too long", true, inst("app", set("sub_appid", long(33))), "sub_appid"},
		{"exempt missing service_id", false, exempt(del("service_id")), "service_id"},
		{"exempt zero service_id", false, exempt(set("service_id", 0)), "service_id"},
		{"exempt negative service_id", false, exempt(set("service_id", -1)), "service_id"},
		{"exempt missing display account", false, exempt(del("contract_display_account")), "contract_display_account"},
		{"exempt display account too long", false, exempt(set("contract_display_account", long(33))), "contract_display_account"},
		{"exempt display account emoji", false, exempt(set("contract_display_account", "🙂")), "contract_display_account"},
		{"exempt missing openid", false, exempt(del("openid")), "openid"},
		{"exempt openid too long", false, exempt(set("openid", long(129))), "openid"},
		{"exempt plan_id", false, exempt(set("plan_id", 1)), "plan_id"},
		{"exempt user_display_name", false, exempt(set("user_display_name", "x")), "user_display_name"},
		{"exempt user_client_ip", false, exempt(set("user_client_ip", "1.2.3.4")), "user_client_ip"},
		{"exempt expired_time", false, exempt(set("expired_time", presignAt(time.Hour))), "expired_time"},
		{"exempt return_url", false, exempt(set("return_url", "https://a.b")), "return_url"},
		{"exempt return_appid", false, exempt(set("return_appid", "wx1")), "return_appid"},
		{"exempt sub_openid common", false, exempt(set("sub_openid", "o")), "sub_openid"},
		{"exempt sub_openid too long institutional", true, exempt(set("sub_mchid", presignSubMchID), set("sub_openid", long(129))), "sub_openid"},
		{"papay sub_openid", false, papay("app", set("sub_openid", "o")), "sub_openid"},
	}
}

func TestPreSignFieldRulesRefuseBeforeStoringOrSending(t *testing.T) {
	t.Parallel()
	rules := presignRules()
	for _, mode := range []string{"common", "institutional"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			inst := mode == "institutional"
			base := startStack(t, stackOptions{Mode: mode})
			for i, rule := range rules {
				if rule.inst != inst {
					continue
				}
				t.Run(rule.name, func(t *testing.T) {
					s := presignStackFor(base, t)
					code := fmt.Sprintf("rule-%d", i)
					// Rebuild the table now: its times are relative to the moment of the request.
					body := presignRules()[i].req(code)
					if m, ok := body.(map[string]any); ok {
						if c, ok := m["out_contract_code"].(string); ok {
							code = c
						}
					}
					calls := len(s.Sim.Requests())
					r := s.do(http.MethodPost, presignPath, appToken, body)
					defer func() {
						if n := s.count(`SELECT count(*) FROM contracts WHERE out_contract_code = $1`, code); n != 0 {
							t.Errorf("%d contract rows stored for %q", n, code)
						}
						if n := len(s.Sim.Requests()) - calls; n != 0 {
							t.Errorf("simulator received %d requests", n)
						}
					}()
					e := presignExpectError(t, r, http.StatusBadRequest, "PARAM_ERROR")
					if f := e.fields(); len(f) != 1 || f[0] != rule.field {
						t.Errorf("detail.fields %v, want exactly [%s]: %s", f, rule.field, r.Body)
					}
				})
			}
			// The same stack does call WeChat for a valid request.
			s := presignStackFor(base, t)
			valid := presignPapay("app", "valid-1")
			if inst {
				valid["sub_mchid"] = presignSubMchID
			}
			calls := len(s.Sim.Requests())
			if r := s.do(http.MethodPost, presignPath, appToken, valid); r.Status != http.StatusCreated {
				t.Fatalf("valid pre-sign: %d %s", r.Status, r.Body)
			}
			if n := len(s.Sim.Requests()) - calls; n != 1 {
				t.Errorf("valid pre-sign: simulator received %d requests, want 1", n)
			}
		})
	}
}

func TestPreSignRefusesBadRequestsWithRequestIDs(t *testing.T) {
	t.Parallel()
	base := startStack(t, stackOptions{})
	valid := func(code string) map[string]any { return presignPapay("app", code) }
	big, _ := json.Marshal(presignWith(valid("big-1"), func(m map[string]any) { m["return_url"] = "https://a.b/" + strings.Repeat("a", 70<<10) }))
	cases := []struct {
		name   string
		token  string
		body   any
		status int
		code   string
		field  string
	}{
		{"malformed JSON", appToken, `{"channel":"app","out_contract_code":`, 400, "PARAM_ERROR", ""},
		{"not JSON", appToken, `channel=app`, 400, "PARAM_ERROR", ""},
		{"trailing data", appToken, `{"channel":"app"} {}`, 400, "PARAM_ERROR", ""},
		{"unknown field appid", appToken, presignWith(valid("unknown-1"), func(m map[string]any) { m["appid"] = "wx123" }), 400, "PARAM_ERROR", "appid"},
		{"unknown field notify_url", appToken, presignWith(valid("unknown-2"), func(m map[string]any) { m["success_notify_url"] = "https://evil.example/n" }), 400, "PARAM_ERROR", "success_notify_url"},
		{"plan_id as string", appToken, presignWith(valid("type-1"), func(m map[string]any) { m["plan_id"] = "123" }), 400, "PARAM_ERROR", "plan_id"},
		{"body over 64 KiB", appToken, big, 413, "PAYLOAD_TOO_LARGE", ""},
		{"missing token", "", valid("auth-1"), 401, "UNAUTHORIZED", ""},
		{"unknown token", "not-a-token", valid("auth-2"), 401, "UNAUTHORIZED", ""},
		{"ops token", opsToken, valid("auth-3"), 403, "FORBIDDEN", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := presignStackFor(base, t)
			r := s.do(http.MethodPost, presignPath, tc.token, tc.body)
			e := presignExpectError(t, r, tc.status, tc.code)
			if tc.field != "" {
				if f := e.fields(); len(f) != 1 || f[0] != tc.field {
					t.Errorf("detail.fields %v, want [%s]", f, tc.field)
				}
			}
			if n := s.count(`SELECT count(*) FROM contracts`); n != 0 {
				t.Errorf("%d contract rows stored", n)
			}
			if n := len(s.Sim.Requests()); n != 0 {
				t.Errorf("simulator received %d requests", n)
			}
		})
	}
	t.Run("success carries X-Request-Id", func(t *testing.T) {
		s := presignStackFor(base, t)
		r := s.do(http.MethodPost, presignPath, appToken, valid("ok-1"))
		if r.Status != http.StatusCreated || r.Header.Get("X-Request-Id") == "" {
			t.Errorf("pre-sign: %d, X-Request-Id %q", r.Status, r.Header.Get("X-Request-Id"))
		}
	})
}

// 4. Simulator faults.

func TestPreSignRetriesSystemErrorsThenOpensSession(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	s.Sim.SetFaults(wechatpaysim.Faults{ErrorCode: "SYSTEM_ERROR", ErrorCount: 2, PathContains: "pre-entrust-sign"})
	r := s.do(http.MethodPost, presignPath, appToken, presignPapay("app", "retry-1"))
	if r.Status != http.StatusCreated {
		t.Fatalf("pre-sign: %d %s, want 201", r.Status, r.Body)
	}
	var codes []string
	for _, rec := range s.Sim.Requests() {
		if strings.Contains(rec.Path, "pre-entrust-sign") {
			codes = append(codes, rec.ErrorCode)
		}
	}
	if want := []string{"SYSTEM_ERROR", "SYSTEM_ERROR", ""}; !reflect.DeepEqual(codes, want) {
		t.Errorf("simulator saw pre-sign answers %q, want %q", codes, want)
	}
	if h := presignHistory(s, "", "retry-1"); len(h) != 1 || h[0].Event != "issue_session" {
		t.Errorf("history %+v, want one issue_session", h)
	}
}

func TestPreSignWeChatParamErrorIsUpstreamErrorWithoutRetry(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	s.Sim.SetFaults(wechatpaysim.Faults{ErrorCode: "PARAM_ERROR", ErrorCount: 1, PathContains: "pre-entrust-sign"})
	req := presignPapay("app", "param-1")
	r := s.do(http.MethodPost, presignPath, appToken, req)
	e := presignExpectError(t, r, http.StatusBadGateway, "UPSTREAM_ERROR")
	if e.Detail["wechat_code"] != "PARAM_ERROR" || e.Detail["retryable"] != false {
		t.Errorf("detail %v, want wechat_code PARAM_ERROR and retryable false", e.Detail)
	}
	if n := presignCalls(s); n != 1 {
		t.Errorf("simulator saw %d pre-sign calls, want 1 (PARAM_ERROR is not retried)", n)
	}
	c := presignGet(s, "", "param-1")
	le, _ := c["last_error"].(map[string]any)
	if c["state"] != "created" || le == nil || le["code"] != "PARAM_ERROR" {
		t.Errorf("contract state %v last_error %v, want created with PARAM_ERROR", c["state"], c["last_error"])
	}
	if _, ok := c["session_expires_at"]; ok {
		t.Errorf("contract has session_expires_at %v", c["session_expires_at"])
	}
	if n := s.count(`SELECT count(*) FROM contract_events`); n != 0 {
		t.Errorf("%d history rows, want 0", n)
	}
	// The fault is spent: the created contract can be pre-signed again.
	if r := s.do(http.MethodPost, presignPath, appToken, req); r.Status != http.StatusCreated {
		t.Errorf("pre-sign after the fault: %d %s, want 201", r.Status, r.Body)
	}
}

func TestPreSignTimeoutIsRetryableUpstreamErrorAndStoresNoSession(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{Env: map[string]string{"WECHATPAY_TIMEOUT": "300ms"}})
	s.Sim.SetFaults(wechatpaysim.Faults{LatencyMS: 1000, PathContains: "pre-entrust-sign"})
	r := s.do(http.MethodPost, presignPath, appToken, presignPapay("app", "slow-1"))
	e := presignExpectError(t, r, http.StatusBadGateway, "UPSTREAM_ERROR")
	if e.Detail["retryable"] != true {
		t.Errorf("detail %v, want retryable true", e.Detail)
	}
	c := presignGet(s, "", "slow-1")
	if c["state"] != "created" {
		t.Errorf("state %v, want created", c["state"])
	}
	if _, ok := c["session_expires_at"]; ok {
		t.Errorf("contract has session_expires_at %v", c["session_expires_at"])
	}
	if n := s.count(`SELECT count(*) FROM contracts WHERE out_contract_code = 'slow-1' AND (session_id <> '' OR launch IS NOT NULL OR session_expires_at IS NOT NULL)`); n != 0 {
		t.Errorf("a session is stored")
	}
	if n := s.count(`SELECT count(*) FROM contract_events`); n != 0 {
		t.Errorf("%d history rows, want 0", n)
	}
}

func TestPreSignWeChatContractExistedAppliesSignedAndAnswers409(t *testing.T) {
	t.Parallel()
	const shopToken = "shop-app-token"
	s := startStack(t, stackOptions{Env: map[string]string{
		"CONTRACTD_API_TOKENS": "app:" + appToken + ",app:shop:" + shopToken + ",ops:" + opsToken}})
	req := presignPapay("app", "exists-1")
	if r := s.do(http.MethodPost, presignPath, appToken, req); r.Status != http.StatusCreated {
		t.Fatalf("pre-sign: %d %s", r.Status, r.Body)
	}
	s.Sim.SetFaults(wechatpaysim.Faults{DropDeliveries: true})
	signed, err := s.Sim.Sign(t.Context(), wechatpaysim.SignRequest{OutContractCode: "exists-1"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the sign notification dropped", func() bool {
		d := s.Sim.Deliveries()
		return len(d) == 1 && d[0].Dropped
	})
	if c := presignGet(s, "", "exists-1"); c["state"] != "session_issued" {
		t.Fatalf("state %v after a dropped notification, want session_issued", c["state"])
	}
	if n := s.count(`WITH u AS (UPDATE contracts SET session_expires_at = now() - interval '1 minute'
		WHERE out_contract_code = 'exists-1' RETURNING 1) SELECT count(*) FROM u`); n != 1 {
		t.Fatalf("expired %d rows", n)
	}

	// The retry comes with a named app token: the sync it leads to names
	// the token's holder as its actor.
	r := s.do(http.MethodPost, presignPath, shopToken, req)
	presignExpectError(t, r, http.StatusConflict, "CONTRACT_EXISTED")
	var actor string
	if err := s.DB.Pool.QueryRow(t.Context(), `SELECT coalesce(details->>'actor', '') FROM contract_events
		WHERE out_contract_code = 'exists-1' AND event = 'sign'`).Scan(&actor); err != nil || actor != "shop" {
		t.Errorf("the sign's actor %q (%v), want shop: the holder of the token whose pre-sign led to it", actor, err)
	}
	var answers []string
	for _, rec := range s.Sim.Requests() {
		if strings.Contains(rec.Path, "pre-entrust-sign") {
			answers = append(answers, fmt.Sprintf("%d %s", rec.Status, rec.ErrorCode))
		}
	}
	if want := []string{"200 ", "403 CONTRACT_EXISTED"}; !reflect.DeepEqual(answers, want) {
		t.Errorf("simulator pre-sign answers %q, want %q", answers, want)
	}
	c := presignGet(s, "", "exists-1")
	if c["state"] != "signed" || c["contract_id"] != signed.ContractID {
		t.Errorf("contract state %v contract_id %v, want signed %s", c["state"], c["contract_id"], signed.ContractID)
	}
	want := []presignEvent{
		{"created", "session_issued", "issue_session", "presign"},
		{"session_issued", "expired", "expire", "presign"},
		{"expired", "signed", "sign", "reconcile"},
	}
	if h := presignHistory(s, "", "exists-1"); !reflect.DeepEqual(h, want) {
		t.Errorf("history %+v\nwant    %+v", h, want)
	}
}
