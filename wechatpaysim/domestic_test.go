package wechatpaysim

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

func domesticBody(t *testing.T, code string, change func(map[string]any)) string {
	t.Helper()
	m := map[string]any{
		"appid":                    testAppID,
		"service_id":               12535,
		"out_contract_code":        code,
		"notify_url":               notifyURL,
		"contract_display_account": "微信代扣用户A",
		"openid":                   "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
	}
	if change != nil {
		change(m)
	}
	return mustJSON(t, m)
}

const domesticPath = "/v3/password-exempt-contract/contracts/"

func TestDomesticRoundTrip(t *testing.T) {
	for _, mode := range []string{"normal", "ecommerce", "service-provider"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			code := "wxwtdk" + strings.ReplaceAll(mode, "-", "")
			subMchID := ""
			body := domesticBody(t, code, nil)
			if mode == "service-provider" {
				subMchID = "1900000002"
				body = domesticBody(t, code, func(m map[string]any) {
					delete(m, "appid")
					delete(m, "openid")
					m["sp_appid"], m["sub_mchid"], m["sub_appid"] = "wxsp00000001", subMchID, "wxsub0000001"
					m["sp_openid"], m["sub_openid"] = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "osub"
				})
			}
			a := e.call("POST", domesticPath+mode+"/pre-entrust-sign/mini-program", body)
			if a.status != 200 {
				t.Fatalf("pre-sign: %d %s", a.status, a.body)
			}
			m := a.json(t)
			id, _ := m["pre_entrustweb_id"].(string)
			if id == "" || m["mchid"] != e.keys.MchID || m["service_id"] != float64(12535) || m["out_contract_code"] != code ||
				!strings.HasPrefix(m["sign_mp_appid"].(string), "wx") || m["sign_mp_path"] != "pages/index/index?pre_entrustweb_id="+id {
				t.Fatalf("pre-sign answer %s", a.body)
			}
			sess := e.sim.Sessions()[0]
			if got := sess.ExpiresAt.Sub(sess.CreatedAt); got != 2*time.Hour {
				t.Errorf("session life %v", got)
			}
			query := domesticPath + "service-id/12535/out-contract-code/" + code
			if subMchID != "" {
				query += "?sub_mchid=" + subMchID
			}
			if a := e.call("GET", query, ""); a.status != 403 || a.code(t) != "CONTRACT_NOT_EXIST" {
				t.Errorf("query before signing: %d %s", a.status, a.body)
			}
			c, err := e.sim.Sign(context.Background(), SignRequest{SessionID: id})
			if err != nil {
				t.Fatal(err)
			}
			if c.OpenID != "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" || c.Family != FamilyDomestic || c.Mode != mode {
				t.Errorf("contract %+v", c)
			}
			n, res := parseNotification(t, e.keys, e.recv.wait())
			if n.EventType != "ENTRUST.SIGN" || n.Resource.OriginalType != "entrust" || res["contract_state"] != "SIGNED" ||
				res["contract_id"] != c.ContractID || res["service_id"] != float64(12535) || res["sub_mchid"] != nilIfEmpty(subMchID) ||
				res["openid"] != c.OpenID || res["mchid"] != e.keys.MchID || res["operate_time"] == nil || res["contract_signed_time"] == nil {
				t.Errorf("sign notification %s: %v", n.EventType, res)
			}
			m = e.call("GET", query, "").json(t)
			if m["contract_id"] != c.ContractID || m["contract_state"] != "SIGNED" || m["contract_signed_time"] == nil || m["contract_terminate_info"] != nil {
				t.Errorf("query: %v", m)
			}
			if a := e.call("GET", domesticPath+"service-id/99/out-contract-code/"+code, ""); a.status != 403 {
				t.Errorf("query with another service_id: %d %s", a.status, a.body)
			}
			term := domesticPath + "service-id/12535/out-contract-code/" + code + "/terminate"
			tb := `{"contract_termination_remark":"merchant ends it"`
			if subMchID != "" {
				tb += `,"sub_mchid":"` + subMchID + `"`
			}
			tb += "}"
			if a := e.call("POST", term, tb); a.status != http.StatusNoContent {
				t.Fatalf("terminate: %d %s", a.status, a.body)
			}
			m = e.call("GET", query, "").json(t)
			info, _ := m["contract_terminate_info"].(map[string]any)
			if m["contract_state"] != "TERMINATED" || info["contract_termination_mode"] != "MERCHANT" ||
				info["contract_termination_remark"] != "merchant ends it" || info["contract_terminated_time"] == nil {
				t.Errorf("query after terminate: %v", m)
			}
			r := e.recv.wait()
			if r.path != "/v1/notifications/terminate" {
				t.Errorf("terminate notification went to %s", r.path)
			}
			n, res = parseNotification(t, e.keys, r)
			info, _ = res["contract_terminate_info"].(map[string]any)
			if n.EventType != "ENTRUST.TERMINATE" || res["contract_state"] != "TERMINATED" || info["contract_termination_mode"] != "MERCHANT" {
				t.Errorf("terminate notification %s: %v", n.EventType, res)
			}
			if a := e.call("POST", term, tb); a.status != 403 {
				t.Errorf("second terminate: %d %s", a.status, a.body)
			}
		})
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func TestDomesticValidation(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, mode string
		change     func(map[string]any)
		status     int
		field      string
	}{
		{"normal", "normal", nil, 200, ""},
		{"unknown mode", "other", nil, 404, ""},
		{"no appid", "normal", func(m map[string]any) { delete(m, "appid") }, 400, "appid"},
		{"no service_id", "ecommerce", func(m map[string]any) { delete(m, "service_id") }, 400, "service_id"},
		{"service_id string", "normal", func(m map[string]any) { m["service_id"] = "12535" }, 400, "service_id"},
		{"no out_contract_code", "normal", func(m map[string]any) { delete(m, "out_contract_code") }, 400, "out_contract_code"},
		{"http notify_url", "normal", func(m map[string]any) { m["notify_url"] = "http://merchant.example.com/n" }, 400, "notify_url"},
		{"no contract_display_account", "normal", func(m map[string]any) { delete(m, "contract_display_account") }, 400, "contract_display_account"},
		{"sub_mchid in normal mode", "normal", func(m map[string]any) { m["sub_mchid"] = "1900000002" }, 400, "sub_mchid"},
		{"service-provider without sub_mchid", "service-provider", func(m map[string]any) { m["sp_appid"] = "wxsp" }, 400, "sub_mchid"},
		{"service-provider without sp_appid", "service-provider", func(m map[string]any) { m["sub_mchid"] = "1900000002" }, 400, "sp_appid"},
		{"sub_openid without sub_appid", "service-provider", func(m map[string]any) {
			m["sp_appid"], m["sub_mchid"], m["sub_openid"] = "wxsp", "1900000002", "osub"
		}, 400, "sub_appid"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := e.call("POST", domesticPath+tt.mode+"/pre-entrust-sign/mini-program", domesticBody(t, "D"+string(rune('A'+i)), tt.change))
			if a.status != tt.status {
				t.Fatalf("status %d, want %d: %s", a.status, tt.status, a.body)
			}
			if tt.field != "" {
				detail, _ := a.json(t)["detail"].(map[string]any)
				if a.code(t) != "PARAM_ERROR" || detail["field"] != tt.field {
					t.Errorf("answer %s, want PARAM_ERROR on %s", a.body, tt.field)
				}
			}
		})
	}
	e.signedDomestic("DEXIST")
	if a := e.call("POST", domesticPath+"normal/pre-entrust-sign/mini-program", domesticBody(t, "DEXIST", nil)); a.status != 403 || a.code(t) != "CONTRACT_EXISTED" {
		t.Errorf("pre-sign of a signed code: %d %s", a.status, a.body)
	}
}

func (e *env) signedDomestic(code string) *Contract {
	e.t.Helper()
	a := e.call("POST", domesticPath+"normal/pre-entrust-sign/mini-program", domesticBody(e.t, code, nil))
	id, _ := a.json(e.t)["pre_entrustweb_id"].(string)
	c, err := e.sim.Sign(context.Background(), SignRequest{SessionID: id})
	if err != nil {
		e.t.Fatalf("sign %s: %v (%s)", code, err, a.body)
	}
	return c
}
