package lifecycle_test

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/lifecycle"
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// notification builds a notification as WeChat sends it: the resource
// encrypted under the APIv3 key, the body signed with signer (the platform
// key for a genuine one).
func (e *env) notification(id, eventType string, resource map[string]any, signer *rsa.PrivateKey) (http.Header, []byte) {
	e.t.Helper()
	plain, err := json.Marshal(resource)
	if err != nil {
		e.t.Fatal(err)
	}
	block, err := aes.NewCipher([]byte(e.keys.APIv3Key))
	if err != nil {
		e.t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		e.t.Fatal(err)
	}
	nonce, ad := randomHex(6), "papay"
	body, err := json.Marshal(map[string]any{
		"id": id, "create_time": time.Now().UTC().Format(time.RFC3339), "resource_type": "encrypt-resource",
		"event_type": eventType, "summary": "test",
		"resource": map[string]string{
			"algorithm": "AEAD_AES_256_GCM", "original_type": ad, "associated_data": ad, "nonce": nonce,
			"ciphertext": base64.StdEncoding.EncodeToString(gcm.Seal(nil, []byte(nonce), plain, []byte(ad))),
		},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ts, hnonce := strconv.FormatInt(time.Now().Unix(), 10), randomHex(16)
	sum := sha256.Sum256([]byte(ts + "\n" + hnonce + "\n" + string(body) + "\n"))
	sig, err := rsa.SignPKCS1v15(rand.Reader, signer, crypto.SHA256, sum[:])
	if err != nil {
		e.t.Fatal(err)
	}
	h := http.Header{}
	h.Set("Wechatpay-Timestamp", ts)
	h.Set("Wechatpay-Nonce", hnonce)
	h.Set("Wechatpay-Signature", base64.StdEncoding.EncodeToString(sig))
	h.Set("Wechatpay-Serial", e.keys.PlatformSerial)
	return h, body
}

// papayResource is a global papay resource for code.
func (e *env) papayResource(code, contractID string, extra map[string]any) map[string]any {
	now := time.Now().UTC()
	r := map[string]any{
		"mchid": e.keys.MchID, "appid": e.keys.AppID, "out_contract_code": code, "contract_id": contractID,
		"plan_id": 123, "openid": "o-" + code, "operate_time": now.Format(time.RFC3339),
		"contract_expired_time": now.AddDate(10, 0, 0).Format(time.RFC3339),
	}
	for k, v := range extra {
		r[k] = v
	}
	return r
}

// inbox reads a notification's inbox row.
func (e *env) inbox(id string) (outcome string, deliveries int) {
	e.t.Helper()
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT outcome, delivery_count FROM wechat_notifications
		WHERE notification_id = $1`, id).Scan(&outcome, &deliveries); err != nil {
		e.t.Fatalf("inbox row %s: %v", id, err)
	}
	return outcome, deliveries
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// HandleNotification, one notification at a time, against a contract in a
// known state: the outcome, the inbox row, the history row and the metric.
func TestHandleNotificationOutcomes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	terminate := map[string]any{"contract_state": "TERMINATED", "termination_mode": "USER", "termination_note": "bye"}
	for _, tc := range []struct {
		name      string
		prepare   func(e *env, code string) // puts the contract where the case needs it
		eventType string
		extra     map[string]any
		outcome   string
		state     domain.State
		history   []string // events of the contract's history, oldest first
	}{
		{name: "sign of an open session applies", eventType: "PAPAY.SIGN", outcome: "applied", state: domain.StateSigned,
			prepare: func(e *env, code string) {
				if _, err := e.svc.PreSign(ctx, e.request(code), ""); err != nil {
					e.t.Fatal(err)
				}
			}, history: []string{"issue_session", "sign"}},
		{name: "sign of a contract never stored creates it", eventType: "PAPAY.SIGN", outcome: "created", state: domain.StateSigned,
			prepare: func(*env, string) {}, history: []string{"sign"}},
		{name: "terminate of a signed contract applies", eventType: "PAPAY.TERMINATE", extra: terminate, outcome: "applied",
			state: domain.StateTerminated, prepare: func(e *env, code string) { e.storeSigned(code) },
			history: []string{"sign", "terminate"}},
		{name: "sign after termination is ignored and recorded", eventType: "PAPAY.SIGN", outcome: "ignored",
			state: domain.StateTerminated, prepare: func(e *env, code string) {
				e.storeSigned(code)
				if _, err := e.deliver("pre-"+code, "PAPAY.TERMINATE",
					e.papayResource(code, "wx-"+code, terminate), e.keys.PlatformKey); err != nil {
					e.t.Fatal(err)
				}
			}, history: []string{"sign", "terminate", "sign"}},
		{name: "sign of a signed contract is a repeat", eventType: "PAPAY.SIGN", outcome: "repeat", state: domain.StateSigned,
			prepare: func(e *env, code string) { e.storeSigned(code) }, history: []string{"sign"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, 5*time.Second, 3*time.Second)
			const code = "hn-1"
			tc.prepare(e, code)
			id := "n-" + randomHex(8)
			res, err := e.deliver(id, tc.eventType,
				e.papayResource(code, "wx-"+code, tc.extra), e.keys.PlatformKey)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != tc.outcome || res.Duplicate || res.NotificationID != id || res.Key.OutContractCode != code {
				t.Fatalf("result %+v, want outcome %s for %s", res, tc.outcome, id)
			}
			if o, n := e.inbox(id); o != tc.outcome || n != 1 {
				t.Fatalf("inbox row: %s, %d deliveries; want %s, 1", o, n, tc.outcome)
			}
			c, err := e.store.Get(ctx, domain.Key{OutContractCode: code})
			if err != nil || c.State != tc.state {
				t.Fatalf("contract %+v %v, want %s", c, err, tc.state)
			}
			var events []string
			for _, h := range e.history(code) {
				events = append(events, string(h.Event))
			}
			if fmt.Sprint(events) != fmt.Sprint(tc.history) {
				t.Fatalf("history %v, want %v", events, tc.history)
			}
			if got := e.metric("contractd_notifications_total", map[string]string{"result": tc.outcome}); got != 1 {
				t.Fatalf("contractd_notifications_total{result=%q} = %v, want 1", tc.outcome, got)
			}
			// The same notification again is a duplicate: counted, not applied.
			res, err = e.deliver(id, tc.eventType,
				e.papayResource(code, "wx-"+code, tc.extra), e.keys.PlatformKey)
			if err != nil || !res.Duplicate || res.Outcome != "duplicate" {
				t.Fatalf("redelivery: %+v %v, want a duplicate", res, err)
			}
			if o, n := e.inbox(id); o != tc.outcome || n != 2 {
				t.Fatalf("inbox row after redelivery: %s, %d deliveries; want %s, 2", o, n, tc.outcome)
			}
			if got := len(e.history(code)); got != len(tc.history) {
				t.Fatalf("%d history rows after redelivery, want %d", got, len(tc.history))
			}
		})
	}
}

// Notifications that are refused write nothing and answer the code the
// API maps; one that breaks a field rule is kept as rejected.
func TestHandleNotificationRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 5*time.Second, 3*time.Second)
	forger, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		eventType string
		resource  map[string]any
		signer    *rsa.PrivateKey
		code      domain.Code
		metric    string
	}{
		{"a signature by another key", "PAPAY.SIGN", e.papayResource("rf-1", "wx-rf-1", nil), forger, domain.CodeSignError, "bad_signature"},
		{"an unknown event type", "PAPAY.SOMETHING", e.papayResource("rf-2", "wx-rf-2", nil), e.keys.PlatformKey, domain.CodeUnknownEventType, "unknown_event"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.deliver("n-"+randomHex(8), tc.eventType, tc.resource, tc.signer)
			if !domain.IsCode(err, tc.code) {
				t.Fatalf("err %v, want %s", err, tc.code)
			}
			if got := e.metric("contractd_notifications_total", map[string]string{"result": tc.metric}); got != 1 {
				t.Fatalf("contractd_notifications_total{result=%q} = %v, want 1", tc.metric, got)
			}
		})
	}
	if n := e.count(`SELECT (SELECT count(*) FROM wechat_notifications) + (SELECT count(*) FROM contracts)`); n != 0 {
		t.Fatalf("%d rows written by refused notifications, want 0", n)
	}

	// Signed notifications that can never apply are kept as rejected (and
	// answered 204 by the API), so WeChat stops retrying them.
	for _, tc := range []struct{ name, code, mchid string }{
		{"a code breaking the code rule is kept as rejected", "bad code with spaces", ""},
		{"another merchant's notification is kept as rejected", "rf-3", "1999999999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var extra map[string]any
			if tc.mchid != "" {
				extra = map[string]any{"mchid": tc.mchid}
			}
			id := "n-" + randomHex(8)
			res, err := e.deliver(id, "PAPAY.SIGN", e.papayResource(tc.code, "wx-rj", extra), e.keys.PlatformKey)
			if err != nil || res.Outcome != "rejected" {
				t.Fatalf("%+v %v, want outcome rejected", res, err)
			}
			if o, n := e.inbox(id); o != "rejected" || n != 1 {
				t.Fatalf("inbox outcome %s (%d deliveries), want rejected, 1", o, n)
			}
			if n := e.count(`SELECT count(*) FROM contracts`); n != 0 {
				t.Fatalf("%d contracts, want 0", n)
			}
		})
	}
}

// deliver hands the notification to the flows, as the HTTP API does.
func (e *env) deliver(id, eventType string, resource map[string]any, signer *rsa.PrivateKey) (lifecycle.NotificationResult, error) {
	e.t.Helper()
	h, body := e.notification(id, eventType, resource, signer)
	return e.svc.HandleNotification(context.Background(), h, body)
}

// storeSigned stores code as signed through a sign notification.
func (e *env) storeSigned(code string) {
	e.t.Helper()
	if _, err := e.deliver("sign-"+code, "PAPAY.SIGN",
		e.papayResource(code, "wx-"+code, nil), e.keys.PlatformKey); err != nil {
		e.t.Fatal(err)
	}
}

// Sweep expires exactly the open sessions whose expiry passed, batch after
// batch, recording each as the sweeper's.
func TestSweepExpiresDueSessionsInBatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, 5*time.Second, 3*time.Second, func(o *lifecycle.Options) { o.SweepBatch = 2 })
	const due = 5
	for i := range due + 2 {
		if _, err := e.svc.PreSign(ctx, e.request(fmt.Sprintf("sw-%d", i)), ""); err != nil {
			t.Fatal(err)
		}
	}
	// The first five are due; the other two stay open.
	if _, err := e.db.Pool.Exec(ctx, `UPDATE contracts SET session_expires_at = now() - interval '1 minute'
		WHERE out_contract_code IN ('sw-0', 'sw-1', 'sw-2', 'sw-3', 'sw-4')`); err != nil {
		t.Fatal(err)
	}
	n, err := e.svc.Sweep(ctx)
	if err != nil || n != due {
		t.Fatalf("Sweep: %d %v, want %d", n, err, due)
	}
	if got := e.count(`SELECT count(*) FROM contracts WHERE state = 'expired'`); got != due {
		t.Fatalf("%d expired, want %d", got, due)
	}
	if got := e.count(`SELECT count(*) FROM contracts WHERE state = 'session_issued'`); got != 2 {
		t.Fatalf("%d still open, want 2", got)
	}
	for i := range due {
		h := e.history(fmt.Sprintf("sw-%d", i))
		last := h[len(h)-1]
		if len(h) != 2 || last.Event != domain.EventExpire || last.Source != domain.SourceSweeper || !strings.Contains(string(last.Details), `"session_expires_at"`) {
			t.Fatalf("sw-%d history %+v, want issue_session then expire by the sweeper naming the expiry", i, h)
		}
	}
	if got := e.metric("contractd_sessions_expired_total", nil); got != due {
		t.Fatalf("contractd_sessions_expired_total %v, want %d", got, due)
	}
	// Nothing is due any more: another sweep expires nothing.
	if n, err := e.svc.Sweep(ctx); err != nil || n != 0 {
		t.Fatalf("second Sweep: %d %v, want 0", n, err)
	}
}
