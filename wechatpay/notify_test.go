package wechatpay

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// globalSign is a PAPAY.SIGN resource in common mode.
var globalSign = map[string]any{
	"mchid": "1200009811", "appid": "wxcbda96de0b165486", "out_contract_code": "100001256",
	"contract_id": "201710180325670965", "plan_id": 12535, "openid": "o-MYE42l80oelYMDE34nYD456Xoy",
	"operate_time": "2026-05-20T21:29:35+08:00", "contract_expired_time": "2031-05-20T21:29:35+08:00",
}

// sentinels lists every Parse sentinel, for exclusivity checks.
var sentinels = []error{
	ErrMissingHeaders, ErrProbeSignature, ErrStaleTimestamp, ErrUnknownSerial,
	ErrBadSignature, ErrMalformed, ErrDecrypt, ErrUnknownEventType,
}

// with returns a copy of m with the given changes; a nil value deletes the key.
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func TestParseValid(t *testing.T) {
	ks := testKeySet(t)
	p := newTestParser(t, bothConfig(ks))
	operate := time.Date(2026, 5, 20, 13, 29, 35, 0, time.UTC)

	tests := []struct {
		name string
		n    notif
		want ContractEvent
	}{
		{
			name: "global sign",
			n:    notif{eventType: "PAPAY.SIGN", resource: globalSign},
			want: ContractEvent{
				Kind: EventSign, Family: FamilyGlobal, MchID: "1200009811", AppID: "wxcbda96de0b165486",
				OutContractCode: "100001256", ContractID: "201710180325670965", PlanID: 12535,
				OpenID: "o-MYE42l80oelYMDE34nYD456Xoy", OperateTime: operate,
				ContractExpiredTime: "2031-05-20T21:29:35+08:00",
			},
		},
		{
			name: "global terminate, expire_time spelling, plan_id as string",
			n: notif{eventType: "PAPAY.TERMINATE", resource: with(globalSign,
				"contract_expired_time", nil, "contract_expire_time", "2031-01-01T00:00:00Z",
				"plan_id", "12535", "contract_termination_mode", "USER")},
			want: ContractEvent{
				Kind: EventTerminate, Family: FamilyGlobal, MchID: "1200009811", AppID: "wxcbda96de0b165486",
				OutContractCode: "100001256", ContractID: "201710180325670965", PlanID: 12535,
				OpenID: "o-MYE42l80oelYMDE34nYD456Xoy", OperateTime: operate,
				ContractExpiredTime: "2031-01-01T00:00:00Z", TerminationMode: "USER",
			},
		},
		{
			name: "global institutional sign",
			n: notif{eventType: "PAPAY.SIGN", resource: map[string]any{
				"sp_mchid": "1900000100", "sp_appid": "wx8888888888888888", "sub_mchid": "1900000109",
				"sub_appid": "wxd678efh567hg6999", "sp_openid": "oUpF8uN95-Ptaags", "sub_openid": "oUpF8uMuAJO_M2pxb1Q9",
				"out_contract_code": "code-7", "contract_id": "c-7", "plan_id": 7,
				"operate_time": "2026-05-20T13:29:35Z",
			}},
			want: ContractEvent{
				Kind: EventSign, Family: FamilyGlobal, SpMchID: "1900000100", SpAppID: "wx8888888888888888",
				SubMchID: "1900000109", SubAppID: "wxd678efh567hg6999", SpOpenID: "oUpF8uN95-Ptaags",
				SubOpenID: "oUpF8uMuAJO_M2pxb1Q9", OutContractCode: "code-7", ContractID: "c-7", PlanID: 7,
				OperateTime: operate,
			},
		},
		{
			name: "domestic sign without operate_time uses contract_signed_time",
			n: notif{eventType: "ENTRUST.SIGN", resource: map[string]any{
				"mchid": "1230000109", "appid": "wxd678efh567hg6787", "service_id": "1000000000",
				"out_contract_code": "wxwtdk1", "contract_id": "1000000000000000", "openid": "oUpF8uMEb4qRXf22hE3X68TekukE",
				"contract_state": "SIGNED", "contract_signed_time": "2026-05-20T21:29:35+08:00",
			}},
			want: ContractEvent{
				Kind: EventSign, Family: FamilyDomestic, MchID: "1230000109", AppID: "wxd678efh567hg6787",
				ServiceID: 1000000000, OutContractCode: "wxwtdk1", ContractID: "1000000000000000",
				OpenID: "oUpF8uMEb4qRXf22hE3X68TekukE", ContractState: "SIGNED", OperateTime: operate,
			},
		},
		{
			name: "domestic terminate uses contract_terminate_info",
			n: notif{eventType: "ENTRUST.TERMINATE", resource: map[string]any{
				"mchid": "1230000109", "sub_mchid": "1900000109", "service_id": 1000000000,
				"out_contract_code": "wxwtdk1", "contract_id": "1000000000000000", "contract_state": "TERMINATED",
				"contract_signed_time": "2026-01-01T00:00:00+08:00",
				"contract_terminate_info": map[string]any{
					"contract_termination_mode": "USER_TERMINATE", "contract_terminated_time": "2026-05-20T21:29:35+08:00",
					"contract_termination_remark": "user left",
				},
			}},
			want: ContractEvent{
				Kind: EventTerminate, Family: FamilyDomestic, MchID: "1230000109", SubMchID: "1900000109",
				ServiceID: 1000000000, OutContractCode: "wxwtdk1", ContractID: "1000000000000000",
				ContractState: "TERMINATED", OperateTime: operate, TerminationMode: "USER_TERMINATE",
				TerminationNote: "user left",
			},
		},
		{
			name: "domestic operate_time wins and top-level termination mode",
			n: notif{eventType: "ENTRUST.TERMINATE", resource: map[string]any{
				"service_id": 5, "out_contract_code": "x", "operate_time": "2026-05-20 21:29:35",
				"contract_termination_mode": "MERCHANT",
			}},
			want: ContractEvent{
				Kind: EventTerminate, Family: FamilyDomestic, ServiceID: 5, OutContractCode: "x",
				OperateTime: operate, TerminationMode: "MERCHANT",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header, body := tt.n.build(t)
			n, err := p.Parse(context.Background(), header, body)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if n.EventType != tt.n.eventType || n.ID == "" || n.ResourceType != "encrypt-resource" || n.CreateTime.IsZero() {
				t.Errorf("envelope = %+v", n)
			}
			if !json.Valid(n.Plaintext) {
				t.Errorf("plaintext is not JSON: %s", n.Plaintext)
			}
			got := n.Contract
			if !got.OperateTime.Equal(tt.want.OperateTime) {
				t.Errorf("OperateTime = %v, want %v", got.OperateTime, tt.want.OperateTime)
			}
			got.OperateTime, tt.want.OperateTime = time.Time{}, time.Time{}
			if got != tt.want {
				t.Errorf("Contract =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestParseFailures(t *testing.T) {
	ks := testKeySet(t)
	p := newTestParser(t, bothConfig(ks))
	valid := notif{eventType: "PAPAY.SIGN", resource: globalSign}

	type input struct {
		header http.Header
		body   []byte
	}
	fromNotif := func(n notif) func(t *testing.T) input {
		return func(t *testing.T) input { h, b := n.build(t); return input{h, b} }
	}
	tweak := func(n notif, f func(h http.Header, body []byte) (http.Header, []byte)) func(t *testing.T) input {
		return func(t *testing.T) input { h, b := n.build(t); h, b = f(h, b); return input{h, b} }
	}
	resign := func(h http.Header, body []byte) http.Header {
		return signedHeaders(t, ks.platform, h.Get(HeaderSerial), testNow.Unix(), h.Get(HeaderNonce), body)
	}

	tests := []struct {
		name      string
		input     func(t *testing.T) input
		want      error
		wantNotif bool
	}{
		{"changed ciphertext", fromNotif(notif{eventType: "PAPAY.SIGN", resource: globalSign, mutate: func(env map[string]any) {
			r := env["resource"].(map[string]any)
			ct := []byte(r["ciphertext"].(string))
			ct[4] ^= 0x01
			r["ciphertext"] = string(ct)
		}}), ErrDecrypt, false},
		{"changed associated data", fromNotif(notif{eventType: "PAPAY.SIGN", resource: globalSign, mutate: func(env map[string]any) {
			env["resource"].(map[string]any)["associated_data"] = "other"
		}}), ErrDecrypt, false},
		{"wrong APIv3 key", fromNotif(notif{eventType: "PAPAY.SIGN", resource: globalSign, apiKey: otherAPIv3Key}), ErrDecrypt, false},
		{"short nonce", fromNotif(notif{eventType: "PAPAY.SIGN", resource: globalSign, mutate: func(env map[string]any) {
			env["resource"].(map[string]any)["nonce"] = "abc"
		}}), ErrMalformed, true},
		{"ciphertext not base64", fromNotif(notif{eventType: "PAPAY.SIGN", resource: globalSign, mutate: func(env map[string]any) {
			env["resource"].(map[string]any)["ciphertext"] = "!!"
		}}), ErrMalformed, true},
		{"unknown serial", fromNotif(notif{eventType: "PAPAY.SIGN", resource: globalSign, key: ks.stranger, serial: CertificateSerial(ks.strangerCert)}), ErrUnknownSerial, false},
		{"known serial, wrong key", fromNotif(notif{eventType: "PAPAY.SIGN", resource: globalSign, key: ks.stranger}), ErrBadSignature, false},
		{"public key id, certificate key", fromNotif(notif{eventType: "PAPAY.SIGN", resource: globalSign, serial: testPubKeyID}), ErrBadSignature, false},
		{"stale timestamp past", fromNotif(notif{eventType: "PAPAY.SIGN", resource: globalSign, timestamp: testNow.Add(-6 * time.Minute).Unix()}), ErrStaleTimestamp, false},
		{"stale timestamp future", fromNotif(notif{eventType: "PAPAY.SIGN", resource: globalSign, timestamp: testNow.Add(6 * time.Minute).Unix()}), ErrStaleTimestamp, false},
		{"timestamp not an integer", tweak(valid, func(h http.Header, b []byte) (http.Header, []byte) {
			h.Set(HeaderTimestamp, "1747740000.5")
			return h, b
		}), ErrStaleTimestamp, false},
		{"probe signature", tweak(valid, func(h http.Header, b []byte) (http.Header, []byte) {
			h.Set(HeaderSignature, "WECHATPAY/SIGNTEST/"+h.Get(HeaderSignature))
			h.Set(HeaderTimestamp, "1") // the probe is reported before the clock is read
			return h, b
		}), ErrProbeSignature, false},
		{"missing nonce", tweak(valid, func(h http.Header, b []byte) (http.Header, []byte) {
			h.Del(HeaderNonce)
			return h, b
		}), ErrMissingHeaders, false},
		{"empty serial", tweak(valid, func(h http.Header, b []byte) (http.Header, []byte) {
			h.Set(HeaderSerial, " ")
			return h, b
		}), ErrMissingHeaders, false},
		{"no headers at all", tweak(valid, func(_ http.Header, b []byte) (http.Header, []byte) {
			return http.Header{}, b
		}), ErrMissingHeaders, false},
		{"body re-serialized", tweak(valid, func(h http.Header, b []byte) (http.Header, []byte) {
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			out, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			return h, out
		}), ErrBadSignature, false},
		{"trailing newline added", tweak(valid, func(h http.Header, b []byte) (http.Header, []byte) {
			return h, append(b, '\n')
		}), ErrBadSignature, false},
		{"unsupported signature type", tweak(valid, func(h http.Header, b []byte) (http.Header, []byte) {
			h.Set(HeaderSignatureType, "WECHATPAY2-SM2-WITH-SM3")
			return h, b
		}), ErrBadSignature, false},
		{"malformed body", tweak(valid, func(h http.Header, _ []byte) (http.Header, []byte) {
			body := []byte(`{"id":"x",`)
			return resign(h, body), body
		}), ErrMalformed, true},
		{"body is a JSON array", tweak(valid, func(h http.Header, _ []byte) (http.Header, []byte) {
			body := []byte(`[1,2]`)
			return resign(h, body), body
		}), ErrMalformed, true},
		{"missing resource", fromNotif(notif{eventType: "PAPAY.SIGN", resource: globalSign, mutate: func(env map[string]any) {
			delete(env, "resource")
		}}), ErrMalformed, true},
		{"missing id", fromNotif(notif{eventType: "PAPAY.SIGN", resource: globalSign, mutate: func(env map[string]any) {
			delete(env, "id")
		}}), ErrMalformed, true},
		{"bad create_time", fromNotif(notif{eventType: "PAPAY.SIGN", resource: globalSign, mutate: func(env map[string]any) {
			env["create_time"] = "yesterday"
		}}), ErrMalformed, true},
		{"other algorithm", fromNotif(notif{eventType: "PAPAY.SIGN", resource: globalSign, mutate: func(env map[string]any) {
			env["resource"].(map[string]any)["algorithm"] = "AEAD_SM4_GCM"
		}}), ErrMalformed, true},
		{"resource lacks out_contract_code", fromNotif(notif{eventType: "PAPAY.SIGN", resource: with(globalSign, "out_contract_code", nil)}), ErrMalformed, true},
		{"resource not JSON", fromNotif(notif{eventType: "ENTRUST.SIGN", resource: []byte("not json")}), ErrMalformed, true},
		{"resource empty", fromNotif(notif{eventType: "PAPAY.SIGN", resource: []byte{}}), ErrMalformed, true},
		{"bad plan_id", fromNotif(notif{eventType: "PAPAY.SIGN", resource: with(globalSign, "plan_id", "twelve")}), ErrMalformed, true},
		{"bad operate_time", fromNotif(notif{eventType: "PAPAY.SIGN", resource: with(globalSign, "operate_time", "soon")}), ErrMalformed, true},
		{"unknown event type", fromNotif(notif{eventType: "TRANSACTION.SUCCESS", resource: globalSign}), ErrUnknownEventType, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.input(t)
			n, err := p.Parse(context.Background(), in.header, in.body)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
			for _, s := range sentinels {
				if s != tt.want && errors.Is(err, s) {
					t.Errorf("error %v also matches %v", err, s)
				}
			}
			if (n != nil) != tt.wantNotif {
				t.Errorf("notification = %+v, want present = %v", n, tt.wantNotif)
			}
			// A malformed envelope decrypts nothing: the notification holds
			// only the id and event type the body names.
			if n != nil && !strings.Contains(err.Error(), "malformed notification: envelope ") && n.Plaintext == nil {
				t.Errorf("a decrypted notification has no Plaintext: %+v", n)
			}
			if n != nil && strings.Contains(err.Error(), "malformed notification: envelope ") {
				var env struct{ ID, EventType any }
				_ = json.Unmarshal(in.body, &env)
				wantID, _ := env.ID.(string)
				if n.Plaintext != nil || n.ID != wantID {
					t.Errorf("notification = %+v, want id %q and no plaintext", n, wantID)
				}
			}
		})
	}
}

func TestParseTimestampWindowEdges(t *testing.T) {
	ks := testKeySet(t)
	p := newTestParser(t, certConfig(ks))
	tests := []struct {
		name   string
		offset time.Duration
		want   error
	}{
		{"exactly 5 minutes ago", -5 * time.Minute, nil},
		{"exactly 5 minutes ahead", 5 * time.Minute, nil},
		{"5 minutes 1 second ago", -5*time.Minute - time.Second, ErrStaleTimestamp},
		{"5 minutes 1 second ahead", 5*time.Minute + time.Second, ErrStaleTimestamp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, b := notif{eventType: "PAPAY.SIGN", resource: globalSign, timestamp: testNow.Add(tt.offset).Unix()}.build(t)
			_, err := p.Parse(context.Background(), h, b)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseKeyModes(t *testing.T) {
	ks := testKeySet(t)
	certSerial := CertificateSerial(ks.platformCert)
	tests := []struct {
		name   string
		cfg    Config
		key    any // *rsa.PrivateKey, chosen below
		serial string
		want   error
	}{
		{"cert only, cert serial", certConfig(ks), "platform", certSerial, nil},
		{"cert only, public key id", certConfig(ks), "pub", testPubKeyID, ErrUnknownSerial},
		{"public key only, public key id", pubKeyConfig(ks), "pub", testPubKeyID, nil},
		{"public key only, cert serial", pubKeyConfig(ks), "platform", certSerial, ErrUnknownSerial},
		{"both, cert serial", bothConfig(ks), "platform", certSerial, nil},
		{"both, public key id", bothConfig(ks), "pub", testPubKeyID, nil},
		{"both, lower-case cert serial", bothConfig(ks), "platform", "5157f09efdc096de", nil},
		{"both, public key id signed by cert key", bothConfig(ks), "platform", testPubKeyID, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := ks.platform
			if tt.key == "pub" {
				key = ks.pub
			}
			p := newTestParser(t, tt.cfg)
			h, b := notif{eventType: "PAPAY.SIGN", resource: globalSign, key: key, serial: tt.serial}.build(t)
			n, err := p.Parse(context.Background(), h, b)
			if tt.want == nil {
				if err != nil || n == nil || n.Contract.OutContractCode != "100001256" {
					t.Fatalf("Parse = %+v, %v", n, err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
		})
	}
}

// plainVerifier hides KnowsSerial, like a verifier from elsewhere.
type plainVerifier struct{ v *Verifier }

func (p plainVerifier) Verify(ctx context.Context, serial, message, signature string) error {
	err := p.v.Verify(ctx, serial, message, signature)
	if err != nil {
		return errors.New(err.Error()) // drop the sentinels
	}
	return nil
}

func (p plainVerifier) GetSerial(ctx context.Context) (string, error) { return p.v.GetSerial(ctx) }

func TestParseWithForeignVerifier(t *testing.T) {
	ks := testKeySet(t)
	v, err := newVerifier(certConfig(ks))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewNotificationParser(testAPIv3Key, plainVerifier{v}, WithClock(func() time.Time { return testNow }))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		n    notif
		want error
	}{
		{"valid", notif{eventType: "PAPAY.SIGN", resource: globalSign}, nil},
		{"unknown serial becomes bad signature", notif{eventType: "PAPAY.SIGN", resource: globalSign, key: ks.stranger, serial: "ABCDEF"}, ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, b := tt.n.build(t)
			_, err := p.Parse(context.Background(), h, b)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestNewNotificationParserValidation(t *testing.T) {
	ks := testKeySet(t)
	v, err := NewVerifier(certConfig(ks))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		key     string
		wantErr bool
		nilVer  bool
	}{
		{"ok", testAPIv3Key, false, false},
		{"short key", "short", true, false},
		{"nil verifier", testAPIv3Key, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ver = v
			if tt.nilVer {
				ver = nil
			}
			_, err := NewNotificationParser(tt.key, ver)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}
