package wechatpaysim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestAuthorization(t *testing.T) {
	e := newEnv(t)
	other, err := GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	const path = "/v3/global/papay/contracts/app-pre-entrust-sign"
	body := globalBody(t, "AUTH1", nil)
	tests := []struct {
		name string
		req  func() *http.Request
		want int
	}{
		{"valid", func() *http.Request { return e.signer().request(t, "POST", e.srv.URL+path, body) }, http.StatusOK},
		{"wrong key", func() *http.Request {
			s := e.signer()
			s.key = other.MerchantKey
			return s.request(t, "POST", e.srv.URL+path, body)
		}, http.StatusUnauthorized},
		{"timestamp 6 minutes old", func() *http.Request {
			s := e.signer()
			s.now = func() time.Time { return time.Now().Add(-6 * time.Minute) }
			return s.request(t, "POST", e.srv.URL+path, body)
		}, http.StatusUnauthorized},
		{"timestamp 6 minutes ahead", func() *http.Request {
			s := e.signer()
			s.now = func() time.Time { return time.Now().Add(6 * time.Minute) }
			return s.request(t, "POST", e.srv.URL+path, body)
		}, http.StatusUnauthorized},
		{"timestamp 4 minutes old", func() *http.Request {
			s := e.signer()
			s.now = func() time.Time { return time.Now().Add(-4 * time.Minute) }
			return s.request(t, "POST", e.srv.URL+path, globalBody(t, "AUTH2", nil))
		}, http.StatusOK},
		{"body changed after signing", func() *http.Request {
			req := e.signer().request(t, "POST", e.srv.URL+path, body)
			changed := strings.Replace(body, "Zhang San", "Li Si", 1)
			req.Body, req.ContentLength = ioNop(changed), int64(len(changed))
			return req
		}, http.StatusUnauthorized},
		{"query changed after signing", func() *http.Request {
			req := e.signer().request(t, "GET", e.srv.URL+"/v3/global/papay/contracts/1?appid=a", "")
			req.URL.RawQuery = "appid=b"
			return req
		}, http.StatusUnauthorized},
		{"wrong mchid", func() *http.Request {
			s := e.signer()
			s.mchID = "1000000000"
			return s.request(t, "POST", e.srv.URL+path, body)
		}, http.StatusUnauthorized},
		{"wrong serial", func() *http.Request {
			s := e.signer()
			s.serial = other.MerchantSerial
			return s.request(t, "POST", e.srv.URL+path, body)
		}, http.StatusUnauthorized},
		{"no Authorization", func() *http.Request {
			req := e.signer().request(t, "POST", e.srv.URL+path, body)
			req.Header.Del("Authorization")
			return req
		}, http.StatusUnauthorized},
		{"other schema", func() *http.Request {
			req := e.signer().request(t, "POST", e.srv.URL+path, body)
			req.Header.Set("Authorization", strings.Replace(req.Header.Get("Authorization"), "WECHATPAY2-SHA256-RSA2048", "WECHATPAY2-SM2-WITH-SM3", 1))
			return req
		}, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := e.send(tt.req())
			if a.status != tt.want {
				t.Fatalf("status %d, want %d: %s", a.status, tt.want, a.body)
			}
			if tt.want == http.StatusUnauthorized {
				if c := a.code(t); c != "SIGN_ERROR" {
					t.Errorf("code %q, want SIGN_ERROR", c)
				}
				reqs := e.sim.Requests()
				if last := reqs[len(reqs)-1]; last.Verified || last.ErrorCode != "SIGN_ERROR" || last.Status != 401 {
					t.Errorf("recorded %+v", last)
				}
			}
		})
	}
}

func TestGlobalPreSignChannels(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		segment, channel, field string
	}{
		{"app-pre-entrust-sign", "app", "session_id"},
		{"miniprogram-pre-entrust-sign", "mini_program", "session_id"},
		{"h5-pre-entrust-sign", "h5", "sign_url"},
		{"jsapi-pre-entrust-sign", "jsapi", "sign_url"},
		{"web-pre-entrust-sign", "web", "show_code_url"},
	}
	for i, tt := range tests {
		t.Run(tt.channel, func(t *testing.T) {
			code := "CH" + tt.channel
			a := e.call("POST", "/v3/global/papay/contracts/"+tt.segment, globalBody(t, code, nil))
			if a.status != http.StatusOK {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			m := a.json(t)
			if len(m) != 1 {
				t.Errorf("answer has %d fields, want only %s: %s", len(m), tt.field, a.body)
			}
			v, _ := m[tt.field].(string)
			sess := e.sim.Sessions()[i]
			if sess.Channel != tt.channel || sess.OutContractCode != code || sess.Family != FamilyGlobal || sess.Mode != "common" {
				t.Errorf("session %+v", sess)
			}
			want := sess.ID
			if tt.field != "session_id" {
				want = e.srv.URL + "/sim/sign-page/" + sess.ID
			}
			if v != want {
				t.Errorf("%s = %q, want %q", tt.field, v, want)
			}
			life := 2 * time.Hour
			if tt.channel == "h5" || tt.channel == "web" {
				life = 10 * time.Minute
			}
			if got := sess.ExpiresAt.Sub(sess.CreatedAt); got != life {
				t.Errorf("default session life %v, want %v", got, life)
			}
		})
	}
	if a := e.call("POST", "/v3/global/papay/contracts/foo-pre-entrust-sign", globalBody(t, "X", nil)); a.status != http.StatusNotFound {
		t.Errorf("unknown channel: %d %s", a.status, a.body)
	}
}

func TestGlobalPreSignValidation(t *testing.T) {
	e := newEnv(t)
	at := func(d time.Duration) string { return time.Now().Add(d).Format(time.RFC3339) }
	tests := []struct {
		name    string
		segment string
		change  func(map[string]any)
		field   string // "" means accepted
	}{
		{"minimal", "app", nil, ""},
		{"no appid", "app", func(m map[string]any) { delete(m, "appid") }, "appid"},
		{"appid too long", "app", func(m map[string]any) { m["appid"] = strings.Repeat("w", 33) }, "appid"},
		{"institutional", "app", func(m map[string]any) {
			delete(m, "appid")
			m["sp_appid"], m["sub_mchid"], m["sub_appid"] = "wxsp", "1900000001", "wxsub"
		}, ""},
		{"institutional without sub_mchid", "app", func(m map[string]any) { delete(m, "appid"); m["sp_appid"] = "wxsp" }, "sub_mchid"},
		{"appid with sp_appid", "app", func(m map[string]any) { m["sp_appid"], m["sub_mchid"] = "wxsp", "1900000001" }, "appid"},
		{"sub_appid in common mode", "app", func(m map[string]any) { m["sub_appid"] = "wxsub" }, "sub_appid"},
		{"no plan_id", "app", func(m map[string]any) { delete(m, "plan_id") }, "plan_id"},
		{"plan_id as string", "app", func(m map[string]any) { m["plan_id"] = "123" }, "plan_id"},
		{"plan_id zero", "app", func(m map[string]any) { m["plan_id"] = 0 }, "plan_id"},
		{"no out_contract_code", "app", func(m map[string]any) { delete(m, "out_contract_code") }, "out_contract_code"},
		{"out_contract_code 33 chars", "app", func(m map[string]any) { m["out_contract_code"] = strings.Repeat("1", 33) }, "out_contract_code"},
		{"no user_display_name", "app", func(m map[string]any) { delete(m, "user_display_name") }, "user_display_name"},
		{"user_display_name emoji", "app", func(m map[string]any) { m["user_display_name"] = "Zhang 😀" }, "user_display_name"},
		{"user_display_name Chinese", "app", func(m map[string]any) { m["user_display_name"] = "张三" }, ""},
		{"user_display_name 33 chars", "app", func(m map[string]any) { m["user_display_name"] = strings.Repeat("a", 33) }, "user_display_name"},
		{"no success_notify_url", "app", func(m map[string]any) { delete(m, "success_notify_url") }, "success_notify_url"},
		{"http notify url", "app", func(m map[string]any) { m["success_notify_url"] = "http://merchant.example.com/n" }, "success_notify_url"},
		{"notify url with query", "app", func(m map[string]any) { m["success_notify_url"] = "https://merchant.example.com/n?a=1" }, "success_notify_url"},
		{"notify url too long", "app", func(m map[string]any) { m["success_notify_url"] = "https://m.example.com/" + strings.Repeat("a", 240) }, "success_notify_url"},
		{"openid too long", "app", func(m map[string]any) { m["openid"] = strings.Repeat("o", 129) }, "openid"},
		{"user_client_ip too long", "h5", func(m map[string]any) { m["user_client_ip"] = strings.Repeat("1", 33) }, "user_client_ip"},
		{"return_url too long", "web", func(m map[string]any) { m["return_url"] = strings.Repeat("r", 257) }, "return_url"},
		{"expired_time not RFC3339", "app", func(m map[string]any) { m["expired_time"] = "2026-01-01 10:00:00" }, "expired_time"},
		{"app expires in 1h", "app", func(m map[string]any) { m["expired_time"] = at(time.Hour) }, ""},
		{"app expires in 4m", "app", func(m map[string]any) { m["expired_time"] = at(4 * time.Minute) }, "expired_time"},
		{"app expires in 2h1m", "app", func(m map[string]any) { m["expired_time"] = at(2*time.Hour + time.Minute) }, "expired_time"},
		{"h5 expires in 7m", "h5", func(m map[string]any) { m["expired_time"] = at(7 * time.Minute) }, ""},
		{"h5 expires in 11m", "h5", func(m map[string]any) { m["expired_time"] = at(11 * time.Minute) }, "expired_time"},
		{"web expires in 4m", "web", func(m map[string]any) { m["expired_time"] = at(4 * time.Minute) }, "expired_time"},
		{"web expires in 1h", "web", func(m map[string]any) { m["expired_time"] = at(time.Hour) }, "expired_time"},
		{"jsapi expires in 1h59m", "jsapi", func(m map[string]any) { m["expired_time"] = at(119 * time.Minute) }, ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code := fmt.Sprintf("V%03d", i)
			a := e.call("POST", "/v3/global/papay/contracts/"+tt.segment+"-pre-entrust-sign", globalBody(t, code, func(m map[string]any) {
				if tt.change != nil {
					tt.change(m)
				}
			}))
			if tt.field == "" {
				if a.status != http.StatusOK {
					t.Fatalf("status %d: %s", a.status, a.body)
				}
				return
			}
			if a.status != http.StatusBadRequest || a.code(t) != "PARAM_ERROR" {
				t.Fatalf("status %d %s, want 400 PARAM_ERROR", a.status, a.body)
			}
			detail, _ := a.json(t)["detail"].(map[string]any)
			if detail["field"] != tt.field {
				t.Errorf("detail.field %v, want %s: %s", detail["field"], tt.field, a.body)
			}
		})
	}
	t.Run("expired_time is kept", func(t *testing.T) {
		exp := time.Now().Add(30 * time.Minute).Truncate(time.Second)
		e.call("POST", "/v3/global/papay/contracts/app-pre-entrust-sign", globalBody(t, "KEEPEXP", func(m map[string]any) {
			m["expired_time"] = exp.Format(time.RFC3339)
		}))
		ss := e.sim.Sessions()
		if got := ss[len(ss)-1].ExpiresAt; !got.Equal(exp) {
			t.Errorf("ExpiresAt %v, want %v", got, exp)
		}
	})
	for _, body := range []string{"", "not json", "[1,2]"} {
		if a := e.call("POST", "/v3/global/papay/contracts/app-pre-entrust-sign", body); a.status != 400 || a.code(t) != "PARAM_ERROR" {
			t.Errorf("body %q: %d %s", body, a.status, a.body)
		}
	}
}

func TestContractExisted(t *testing.T) {
	e := newEnv(t)
	first, second := e.preSign("EXIST1"), e.preSign("EXIST1")
	c, err := e.sim.Sign(context.Background(), SignRequest{SessionID: first})
	if err != nil {
		t.Fatal(err)
	}
	// The other session for the same code, opened before the signing, cannot sign.
	if _, err := e.sim.Sign(context.Background(), SignRequest{SessionID: second}); !errors.Is(err, ErrContractExisted) {
		t.Errorf("second session: %v, want ErrContractExisted", err)
	}
	if _, err := e.sim.Sign(context.Background(), SignRequest{SessionID: first}); !errors.Is(err, ErrSessionUsed) {
		t.Errorf("used session: %v, want ErrSessionUsed", err)
	}
	a := e.call("POST", "/v3/global/papay/contracts/h5-pre-entrust-sign", globalBody(t, "EXIST1", nil))
	if a.status != http.StatusForbidden || a.code(t) != "CONTRACT_EXISTED" {
		t.Fatalf("pre-sign of a signed code: %d %s", a.status, a.body)
	}
	if _, err := e.sim.TerminateAsUser(context.Background(), c.ContractID); err != nil {
		t.Fatal(err)
	}
	// After termination the code may be signed again, as a new contract.
	c2 := e.signed("EXIST1")
	if c2.ContractID == c.ContractID {
		t.Errorf("re-signing reused contract id %s", c.ContractID)
	}
	old, _ := e.sim.Contract(c.ContractID)
	if old.State != StateTerminated {
		t.Errorf("old contract is %s", old.State)
	}
}

func TestGlobalQueryAndTerminate(t *testing.T) {
	e := newEnv(t)
	c := e.signed("Q1")
	if len(c.ContractID) != 20 || c.State != StateSigned || c.OpenID != "ouFhd5X9s9WteC3eWRjXV3lea123" {
		t.Fatalf("contract %+v", c)
	}
	byID := "/v3/global/papay/contracts/" + c.ContractID + "?appid=" + testAppID
	byCode := "/v3/global/papay/contracts/out-contract-code/Q1?appid=" + testAppID + "&plan_id=123"
	for _, p := range []string{byID, byCode} {
		a := e.call("GET", p, "")
		if a.status != 200 {
			t.Fatalf("GET %s: %d %s", p, a.status, a.body)
		}
		m := a.json(t)
		if m["contract_id"] != c.ContractID || m["state"] != "SIGNED" || m["mchid"] != e.keys.MchID ||
			m["appid"] != testAppID || m["plan_id"] != float64(123) || m["out_contract_code"] != "Q1" ||
			m["user_display_name"] != "Zhang San" || m["openid"] != c.OpenID {
			t.Errorf("GET %s: %s", p, a.body)
		}
		if _, err := time.Parse(time.RFC3339, m["signed_time"].(string)); err != nil {
			t.Errorf("signed_time: %v", err)
		}
	}
	notFound := []string{
		"/v3/global/papay/contracts/12345678901234567890?appid=" + testAppID,
		"/v3/global/papay/contracts/" + c.ContractID + "?appid=wxother",
		"/v3/global/papay/contracts/out-contract-code/Q2?appid=" + testAppID + "&plan_id=123",
		"/v3/global/papay/contracts/out-contract-code/Q1?appid=" + testAppID + "&plan_id=124",
	}
	for _, p := range notFound {
		if a := e.call("GET", p, ""); a.status != 403 || a.code(t) != "CONTRACT_NOT_EXIST" {
			t.Errorf("GET %s: %d %s", p, a.status, a.body)
		}
	}
	for _, p := range []string{"/v3/global/papay/contracts/" + c.ContractID, "/v3/global/papay/contracts/out-contract-code/Q1?appid=" + testAppID} {
		if a := e.call("GET", p, ""); a.status != 400 || a.code(t) != "PARAM_ERROR" {
			t.Errorf("GET %s: %d %s", p, a.status, a.body)
		}
	}

	term := "/v3/global/papay/contracts/" + c.ContractID + "/terminate"
	if a := e.call("POST", term, `{"appid":"`+testAppID+`"}`); a.status != 400 || a.code(t) != "PARAM_ERROR" {
		t.Errorf("terminate without note: %d %s", a.status, a.body)
	}
	a := e.call("POST", term, `{"appid":"`+testAppID+`","termination_note":"user asked"}`)
	if a.status != http.StatusNoContent || len(a.body) != 0 {
		t.Fatalf("terminate: %d %s", a.status, a.body)
	}
	m := e.call("GET", byID, "").json(t)
	if m["state"] != "TERMINATED" || m["termination_mode"] != "MERCHANT" || m["termination_note"] != "user asked" || m["terminated_time"] == nil {
		t.Errorf("after terminate: %v", m)
	}
	if a := e.call("POST", term, `{"appid":"`+testAppID+`","termination_note":"again"}`); a.status != 403 || a.code(t) != "CONTRACT_NOT_EXIST" {
		t.Errorf("second terminate: %d %s", a.status, a.body)
	}
	if a := e.call("GET", "/v3/global/papay/nothing", ""); a.status != 404 {
		t.Errorf("unknown path: %d %s", a.status, a.body)
	}
}

func TestInstitutionalGlobal(t *testing.T) {
	e := newEnv(t)
	body := globalBody(t, "INST1", func(m map[string]any) {
		delete(m, "appid")
		m["sp_appid"], m["sub_mchid"], m["sub_appid"] = "wxsp00000001", "1900000001", "wxsub0000001"
	})
	a := e.call("POST", "/v3/global/papay/contracts/miniprogram-pre-entrust-sign", body)
	if a.status != 200 {
		t.Fatalf("pre-sign: %d %s", a.status, a.body)
	}
	if _, err := e.sim.Sign(context.Background(), SignRequest{OutContractCode: "INST1"}); err == nil {
		t.Error("sign by code without sub_mchid found the institutional session")
	}
	c, err := e.sim.Sign(context.Background(), SignRequest{OutContractCode: "INST1", SubMchID: "1900000001"})
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{"sp_appid": {"wxsp00000001"}, "sub_mchid": {"1900000001"}, "sub_appid": {"wxsub0000001"}}
	m := e.call("GET", "/v3/global/papay/contracts/"+c.ContractID+"?"+q.Encode(), "").json(t)
	if m["sp_mchid"] != e.keys.MchID || m["sub_mchid"] != "1900000001" || m["sp_appid"] != "wxsp00000001" || m["mchid"] != nil || m["appid"] != nil {
		t.Errorf("institutional query: %v", m)
	}
	q.Set("plan_id", "123")
	if a := e.call("GET", "/v3/global/papay/contracts/out-contract-code/INST1?"+q.Encode(), ""); a.status != 200 {
		t.Errorf("query by code: %d %s", a.status, a.body)
	}
	if a := e.call("GET", "/v3/global/papay/contracts/"+c.ContractID+"?appid="+testAppID, ""); a.status != 403 {
		t.Errorf("common-mode query of an institutional contract: %d %s", a.status, a.body)
	}
	_, res := parseNotification(t, e.keys, e.recv.wait())
	for k, want := range map[string]any{
		"sp_mchid": e.keys.MchID, "sp_appid": "wxsp00000001", "sub_mchid": "1900000001", "sub_appid": "wxsub0000001",
		"sp_openid": c.OpenID, "sub_openid": c.SubOpenID, "contract_id": c.ContractID, "out_contract_code": "INST1",
	} {
		if res[k] != want || want == "" {
			t.Errorf("resource %s = %v, want %v", k, res[k], want)
		}
	}
	a = e.call("POST", "/v3/global/papay/contracts/"+c.ContractID+"/terminate",
		`{"sp_appid":"wxsp00000001","sub_mchid":"1900000001","termination_note":"n"}`)
	if a.status != 204 {
		t.Errorf("terminate: %d %s", a.status, a.body)
	}
}
