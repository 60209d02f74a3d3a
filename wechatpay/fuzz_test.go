package wechatpay

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
)

// FuzzParse checks that Parse never panics and always answers with a
// notification, an error wrapping a sentinel, or (for unknown event types) both.
func FuzzParse(f *testing.F) {
	ks := testKeySet(f)
	add := func(n notif) {
		h, b := n.build(f)
		f.Add(h.Get(HeaderTimestamp), h.Get(HeaderNonce), h.Get(HeaderSignature), h.Get(HeaderSerial), b)
	}
	add(notif{eventType: "PAPAY.SIGN", resource: globalSign})
	add(notif{eventType: "PAPAY.TERMINATE", resource: with(globalSign, "contract_termination_mode", "USER")})
	add(notif{eventType: "ENTRUST.SIGN", resource: map[string]any{"service_id": "12", "out_contract_code": "d1", "contract_signed_time": "2026-05-20T21:29:35+08:00"}})
	add(notif{eventType: "ENTRUST.TERMINATE", resource: map[string]any{"service_id": 12, "out_contract_code": "d1", "contract_terminate_info": map[string]any{}}})
	add(notif{eventType: "PAPAY.SIGN", resource: globalSign, serial: testPubKeyID, key: ks.pub})
	add(notif{eventType: "UNKNOWN.EVENT", resource: globalSign})
	add(notif{eventType: "PAPAY.SIGN", resource: globalSign, apiKey: otherAPIv3Key})
	add(notif{eventType: "PAPAY.SIGN", resource: []byte(`{"plan_id":{}}`)})
	add(notif{eventType: "PAPAY.SIGN", resource: globalSign, mutate: func(env map[string]any) {
		env["resource"].(map[string]any)["nonce"] = ""
	}})
	add(notif{eventType: "PAPAY.SIGN", resource: globalSign, key: ks.stranger, serial: CertificateSerial(ks.strangerCert)})
	ts := strconv.FormatInt(testNow.Unix(), 10)
	f.Add(ts, "n", "WECHATPAY/SIGNTEST/abc", "PUB_KEY_ID_x", []byte(`{}`))
	f.Add("-9223372036854775808", "n", "sig", "serial", []byte(`{}`))
	f.Add("9223372036854775807", "n", "sig", "serial", []byte(`{}`))
	f.Add("", "", "", "", []byte(nil))
	f.Add(ts, "n", "!!!notbase64", CertificateSerial(ks.platformCert), []byte(`null`))

	p := newTestParser(f, bothConfig(ks))
	f.Fuzz(func(t *testing.T, timestamp, nonce, signature, serial string, body []byte) {
		h := http.Header{}
		h.Set(HeaderTimestamp, timestamp)
		h.Set(HeaderNonce, nonce)
		h.Set(HeaderSignature, signature)
		h.Set(HeaderSerial, serial)
		n, err := p.Parse(context.Background(), h, body)
		switch {
		case err == nil && n == nil:
			t.Fatal("Parse returned neither a notification nor an error")
		case err == nil:
			if n.Contract.OutContractCode == "" {
				t.Fatalf("accepted notification without out_contract_code: %+v", n)
			}
		case n != nil && !errors.Is(err, ErrUnknownEventType) && !errors.Is(err, ErrMalformed):
			t.Fatalf("notification returned with error %v", err)
		}
		if err != nil {
			matched := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					matched++
				}
			}
			if matched != 1 {
				t.Fatalf("error %v matches %d sentinels, want 1", err, matched)
			}
		}
	})
}
