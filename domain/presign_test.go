package domain

import (
	"strings"
	"testing"
	"time"
)

func i64(v int64) *int64 { return &v }

var now = time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)

func validPapay(ch Channel) PreSignRequest {
	return PreSignRequest{Product: ProductPapay, Channel: ch, OutContractCode: "100001256", PlanID: i64(123), UserDisplayName: "Zhang San"}
}

func validExempt() PreSignRequest {
	return PreSignRequest{Product: ProductPasswordExempt, Channel: ChannelMiniProgram, OutContractCode: "wxwtdk20200910100000",
		ServiceID: i64(12535), ContractDisplayAccount: "微信代扣用户A", OpenID: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}
}

func TestPreSignValidAcrossProductsChannelsModes(t *testing.T) {
	for _, ch := range []Channel{ChannelApp, ChannelMiniProgram, ChannelH5, ChannelJSAPI, ChannelWeb} {
		r := validPapay(ch)
		if err := r.Validate(ModeCommon, now); err != nil {
			t.Errorf("papay %s common: %v", ch, err)
		}
		r.SubMchID, r.SubAppID = "10000097", "wxcbda96de0b165484"
		if err := r.Validate(ModeInstitutional, now); err != nil {
			t.Errorf("papay %s institutional: %v", ch, err)
		}
	}
	r := validExempt()
	if err := r.Validate(ModeCommon, now); err != nil {
		t.Errorf("password_exempt common: %v", err)
	}
	r.SubMchID, r.SubOpenID = "10000097", "o-sub"
	if err := r.Validate(ModeInstitutional, now); err != nil {
		t.Errorf("password_exempt institutional: %v", err)
	}
	d := PreSignRequest{Channel: ChannelApp, OutContractCode: "x", PlanID: i64(1), UserDisplayName: "n"}
	if err := d.Validate(ModeCommon, now); err != nil || d.Product != ProductPapay {
		t.Errorf("default product: %v %q", err, d.Product)
	}
}

func TestPreSignFieldRules(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	at := func(d time.Duration) string { return now.Add(d).In(time.FixedZone("CST", 8*3600)).Format(time.RFC3339) }
	cases := []struct {
		name  string
		mode  Mode
		req   func() PreSignRequest
		field string
	}{
		{"unknown product", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.Product = "loan"; return r }, "product"},
		{"missing channel", ModeCommon, func() PreSignRequest { r := validPapay(""); return r }, "channel"},
		{"unknown channel", ModeCommon, func() PreSignRequest { r := validPapay("fax"); return r }, "channel"},
		{"password_exempt on app", ModeCommon, func() PreSignRequest { r := validExempt(); r.Channel = ChannelApp; return r }, "channel"},
		{"missing code", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.OutContractCode = ""; return r }, "out_contract_code"},
		{"code too long", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.OutContractCode = long(33); return r }, "out_contract_code"},
		{"code with slash", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.OutContractCode = "a/b"; return r }, "out_contract_code"},
		{"code with space", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.OutContractCode = "a b"; return r }, "out_contract_code"},
		{"missing plan_id", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.PlanID = nil; return r }, "plan_id"},
		{"zero plan_id", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.PlanID = i64(0); return r }, "plan_id"},
		{"missing display name", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.UserDisplayName = ""; return r }, "user_display_name"},
		{"display name too long", ModeCommon, func() PreSignRequest {
			r := validPapay(ChannelApp)
			r.UserDisplayName = strings.Repeat("张", 33)
			return r
		}, "user_display_name"},
		{"display name emoji", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.UserDisplayName = "Zhang 😀"; return r }, "user_display_name"},
		{"display name control char", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.UserDisplayName = "Zh\x00ang"; return r }, "user_display_name"},
		{"display name invalid utf8", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.UserDisplayName = "\xff\xfe"; return r }, "user_display_name"},
		{"service_id on papay", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.ServiceID = i64(1); return r }, "service_id"},
		{"display account on papay", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.ContractDisplayAccount = "x"; return r }, "contract_display_account"},
		{"openid too long", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.OpenID = long(129); return r }, "openid"},
		{"openid on h5", ModeCommon, func() PreSignRequest { r := validPapay(ChannelH5); r.OpenID = "o"; return r }, "openid"},
		{"openid on web", ModeCommon, func() PreSignRequest { r := validPapay(ChannelWeb); r.OpenID = "o"; return r }, "openid"},
		{"client ip on jsapi", ModeCommon, func() PreSignRequest { r := validPapay(ChannelJSAPI); r.UserClientIP = "1.2.3.4"; return r }, "user_client_ip"},
		{"client ip not an ip", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.UserClientIP = "localhost"; return r }, "user_client_ip"},
		{"client ip too long", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.UserClientIP = long(33); return r }, "user_client_ip"},
		{"return_url on h5", ModeCommon, func() PreSignRequest { r := validPapay(ChannelH5); r.ReturnURL = "https://a.b/c"; return r }, "return_url"},
		{"return_url relative", ModeCommon, func() PreSignRequest { r := validPapay(ChannelWeb); r.ReturnURL = "/back"; return r }, "return_url"},
		{"return_url too long", ModeCommon, func() PreSignRequest { r := validPapay(ChannelWeb); r.ReturnURL = "https://a.b/" + long(250); return r }, "return_url"},
		{"return_appid on app", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.ReturnAppID = "wx1"; return r }, "return_appid"},
		{"return_appid too long", ModeCommon, func() PreSignRequest { r := validPapay(ChannelH5); r.ReturnAppID = long(33); return r }, "return_appid"},
		{"expired_time not rfc3339", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.ExpiredTime = "2026-11-22 13:29:35"; return r }, "expired_time"},
		{"expired_time too soon", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.ExpiredTime = at(4 * time.Minute); return r }, "expired_time"},
		{"expired_time exactly 5m", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.ExpiredTime = at(5 * time.Minute); return r }, "expired_time"},
		{"expired_time past 2h app", ModeCommon, func() PreSignRequest {
			r := validPapay(ChannelApp)
			r.ExpiredTime = at(2*time.Hour + time.Second)
			return r
		}, "expired_time"},
		{"expired_time 11m on h5", ModeCommon, func() PreSignRequest { r := validPapay(ChannelH5); r.ExpiredTime = at(11 * time.Minute); return r }, "expired_time"},
		{"expired_time 10m on web", ModeCommon, func() PreSignRequest { r := validPapay(ChannelWeb); r.ExpiredTime = at(10 * time.Minute); return r }, "expired_time"},
		{"expired_time in the past", ModeCommon, func() PreSignRequest { r := validPapay(ChannelMiniProgram); r.ExpiredTime = at(-time.Hour); return r }, "expired_time"},
		{"sub_mchid in common mode", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.SubMchID = "1"; return r }, "sub_mchid"},
		{"sub_appid in common mode", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.SubAppID = "wx"; return r }, "sub_appid"},
		{"missing sub_mchid institutional", ModeInstitutional, func() PreSignRequest { return validPapay(ChannelApp) }, "sub_mchid"},
		{"sub_mchid too long", ModeInstitutional, func() PreSignRequest { r := validPapay(ChannelApp); r.SubMchID = long(33); return r }, "sub_mchid"},
		{"sub_appid too long", ModeInstitutional, func() PreSignRequest { r := validPapay(ChannelApp); r.SubMchID = "1"; r.SubAppID = long(33); return r }, "sub_appid"},
		{"exempt missing service_id", ModeCommon, func() PreSignRequest { r := validExempt(); r.ServiceID = nil; return r }, "service_id"},
		{"exempt negative service_id", ModeCommon, func() PreSignRequest { r := validExempt(); r.ServiceID = i64(-1); return r }, "service_id"},
		{"exempt missing display account", ModeCommon, func() PreSignRequest { r := validExempt(); r.ContractDisplayAccount = ""; return r }, "contract_display_account"},
		{"exempt display account emoji", ModeCommon, func() PreSignRequest { r := validExempt(); r.ContractDisplayAccount = "🙂"; return r }, "contract_display_account"},
		{"exempt missing openid", ModeCommon, func() PreSignRequest { r := validExempt(); r.OpenID = ""; return r }, "openid"},
		{"exempt plan_id", ModeCommon, func() PreSignRequest { r := validExempt(); r.PlanID = i64(1); return r }, "plan_id"},
		{"exempt user_display_name", ModeCommon, func() PreSignRequest { r := validExempt(); r.UserDisplayName = "x"; return r }, "user_display_name"},
		{"exempt expired_time", ModeCommon, func() PreSignRequest { r := validExempt(); r.ExpiredTime = at(time.Hour); return r }, "expired_time"},
		{"exempt return_url", ModeCommon, func() PreSignRequest { r := validExempt(); r.ReturnURL = "https://a.b"; return r }, "return_url"},
		{"exempt sub_openid common", ModeCommon, func() PreSignRequest { r := validExempt(); r.SubOpenID = "o"; return r }, "sub_openid"},
		{"papay sub_openid", ModeCommon, func() PreSignRequest { r := validPapay(ChannelApp); r.SubOpenID = "o"; return r }, "sub_openid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.req()
			err := r.Validate(tc.mode, now)
			var e *Error
			if !IsCode(err, CodeParamError) || !asError(err, &e) {
				t.Fatalf("got %v, want PARAM_ERROR on %s", err, tc.field)
			}
			if len(e.Fields) != 1 || e.Fields[0].Field != tc.field || e.Fields[0].Reason == "" {
				t.Fatalf("fields = %+v, want exactly %s", e.Fields, tc.field)
			}
		})
	}
}

func asError(err error, e **Error) bool {
	v, ok := err.(*Error)
	*e = v
	return ok
}

func TestSessionExpiryDefaultsPerChannel(t *testing.T) {
	cases := []struct {
		req  PreSignRequest
		want time.Time
	}{
		{validPapay(ChannelH5), now.Add(10 * time.Minute)},
		{validPapay(ChannelWeb), now.Add(10 * time.Minute)},
		{validPapay(ChannelApp), now.Add(2 * time.Hour)},
		{validExempt(), now.Add(2 * time.Hour)},
	}
	for _, tc := range cases {
		if got := tc.req.SessionExpiry(now); !got.Equal(tc.want) {
			t.Errorf("%s/%s: expiry %v, want %v", tc.req.Product, tc.req.Channel, got, tc.want)
		}
	}
	r := validPapay(ChannelApp)
	r.ExpiredTime = "2026-11-22T13:29:35+08:00"
	if got := r.SessionExpiry(now); !got.Equal(time.Date(2026, 11, 22, 5, 29, 35, 0, time.UTC)) {
		t.Errorf("explicit expiry %v", got)
	}
}

func TestFingerprintSeparatesParameters(t *testing.T) {
	a, b := validPapay(ChannelApp), validPapay(ChannelApp)
	if a.Fingerprint() != b.Fingerprint() {
		t.Fatal("identical requests differ")
	}
	b.UserDisplayName = "Li Si"
	if a.Fingerprint() == b.Fingerprint() {
		t.Fatal("different requests share a fingerprint")
	}
}

func TestValidNotifyURL(t *testing.T) {
	for url, ok := range map[string]bool{
		"https://merchant.example/v1/notifications/wechatpay": true,
		"http://merchant.example/n":                           false,
		"https://merchant.example/n?x=1":                      false,
		"/n":                                                  false,
		"https://merchant.example/" + strings.Repeat("a", 300): false,
	} {
		if got := ValidNotifyURL(url) == ""; got != ok {
			t.Errorf("ValidNotifyURL(%q) ok=%v, want %v", url, got, ok)
		}
	}
}
