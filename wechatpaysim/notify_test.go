package wechatpaysim

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestGlobalNotifications(t *testing.T) {
	e := newEnv(t)
	c := e.signed("N1")
	r := e.recv.wait()
	if r.path != "/v1/notifications/wechatpay" {
		t.Errorf("sign notification went to %s", r.path)
	}
	for h, want := range map[string]string{
		"Content-Type": "application/json", "Wechatpay-Serial": e.keys.PlatformSerial,
		"Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
	} {
		if got := r.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	n, res := parseNotification(t, e.keys, r)
	if n.EventType != "PAPAY.SIGN" || n.ResourceType != "encrypt-resource" || n.Resource.Algorithm != "AEAD_AES_256_GCM" ||
		n.Resource.OriginalType != "papay" || n.Resource.AssociatedData != "papay" || len(n.Resource.Nonce) != 12 ||
		len(n.ID) != 36 || n.CreateTime == nil || n.Summary == "" {
		t.Errorf("envelope %+v resource %+v", n, n.Resource)
	}
	for k, want := range map[string]any{
		"mchid": e.keys.MchID, "appid": testAppID, "out_contract_code": "N1", "contract_id": c.ContractID,
		"plan_id": float64(123), "openid": c.OpenID,
	} {
		if res[k] != want {
			t.Errorf("resource %s = %v, want %v", k, res[k], want)
		}
	}
	for _, k := range []string{"operate_time", "contract_expired_time"} {
		if _, err := time.Parse(time.RFC3339, res[k].(string)); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	if _, ok := res["contract_termination_mode"]; ok {
		t.Error("sign resource carries contract_termination_mode")
	}

	if _, err := e.sim.TerminateAsUser(context.Background(), c.ContractID); err != nil {
		t.Fatal(err)
	}
	r = e.recv.wait()
	if r.path != "/v1/notifications/terminate" {
		t.Errorf("terminate notification went to %s", r.path)
	}
	n, res = parseNotification(t, e.keys, r)
	if n.EventType != "PAPAY.TERMINATE" || res["contract_termination_mode"] != "USER" || res["contract_id"] != c.ContractID {
		t.Errorf("terminate notification %s: %v", n.EventType, res)
	}
	waitFor(t, "deliveries done", func() bool {
		ds := e.sim.Deliveries()
		return len(ds) == 2 && ds[0].Done && ds[1].Done
	})
	ds := e.sim.Deliveries()
	if ds[0].EventType != "PAPAY.SIGN" || ds[0].URL != e.recv.srv.URL+"/v1/notifications/wechatpay" || ds[0].NotifyURL != notifyURL ||
		ds[0].ContractID != c.ContractID || ds[0].OutContractCode != "N1" || len(ds[0].Attempts) != 1 || ds[0].Attempts[0].Status != 204 || ds[0].Attempts[0].DurationMS <= 0 {
		t.Errorf("delivery %+v", ds[0])
	}
	var plain map[string]any
	if err := json.Unmarshal(ds[1].Resource, &plain); err != nil || plain["contract_termination_mode"] != "USER" {
		t.Errorf("recorded resource %s: %v", ds[1].Resource, err)
	}
}

func TestNotificationSignedAtEachAttempt(t *testing.T) {
	e := newEnv(t)
	e.recv.setRespond(func(n int, _ received) int {
		if n == 1 {
			return 500
		}
		return 200
	})
	e.signed("EACH")
	first, second := e.recv.wait(), e.recv.wait()
	if string(first.body) != string(second.body) {
		t.Error("body changed between attempts")
	}
	if first.header.Get("Wechatpay-Nonce") == second.header.Get("Wechatpay-Nonce") ||
		first.header.Get("Wechatpay-Signature") == second.header.Get("Wechatpay-Signature") {
		t.Error("attempts share nonce or signature")
	}
	parseNotification(t, e.keys, second)
}

func TestRetrySchedule(t *testing.T) {
	tests := []struct {
		name      string
		scale     float64
		respond   func(n int, _ received) int
		attempts  int
		done      bool
		wantGaps  []time.Duration // at scale; checked as lower bounds, and upper bounds with slack
		maxFactor float64
	}{
		{"500 twice then 204", 0.001, func(n int, _ received) int {
			if n <= 2 {
				return 500
			}
			return 204
		}, 3, true, []time.Duration{15 * time.Millisecond, 15 * time.Millisecond}, 1},
		{"first 2xx stops", 0.001, func(int, received) int { return 202 }, 1, true, nil, 1},
		{"4xx retried", 0.001, func(n int, _ received) int {
			if n == 1 {
				return 401
			}
			return 200
		}, 2, true, []time.Duration{15 * time.Millisecond}, 1},
		{"always failing gives up", 0.0001, func(int, received) int { return 503 }, 10, false, []time.Duration{
			1500 * time.Microsecond, 1500 * time.Microsecond, 3 * time.Millisecond, 18 * time.Millisecond,
			180 * time.Millisecond, 180 * time.Millisecond, 180 * time.Millisecond, 180 * time.Millisecond, 360 * time.Millisecond,
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *Config) { c.TimeScale = tt.scale })
			e.recv.setRespond(tt.respond)
			e.signed("RETRY")
			waitFor(t, "delivery to finish", func() bool {
				d := e.sim.Deliveries()[0]
				return d.Done || d.GaveUp
			})
			// Once the delivery goroutine has ended, no further attempt can follow.
			waitFor(t, "deliveries to stop", e.sim.Idle)
			d := e.sim.Deliveries()[0]
			got := e.recv.all()
			if len(d.Attempts) != tt.attempts || len(got) != tt.attempts || d.Done != tt.done || d.GaveUp == tt.done {
				t.Fatalf("attempts %d (received %d), done %v, gave up %v; want %d, done %v",
					len(d.Attempts), len(got), d.Done, d.GaveUp, tt.attempts, tt.done)
			}
			for i, want := range tt.wantGaps {
				gap := got[i+1].at.Sub(got[i].at)
				if gap < want || gap > want+150*time.Millisecond {
					t.Errorf("gap %d = %v, want about %v", i+1, gap, want)
				}
			}
			for i, a := range d.Attempts {
				if a.Status != tt.respond(i+1, received{}) {
					t.Errorf("attempt %d recorded status %d", i+1, a.Status)
				}
			}
		})
	}
}

func TestUnreachableReceiverRecordsErrors(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.NotifyTarget = "http://127.0.0.1:1"; c.TimeScale = 0.0001 })
	e.signed("UNREACH")
	waitFor(t, "give up", func() bool { return e.sim.Deliveries()[0].GaveUp })
	d := e.sim.Deliveries()[0]
	if len(d.Attempts) != 10 || d.Attempts[0].Err == "" || d.Attempts[0].Status != 0 {
		t.Errorf("delivery %+v", d)
	}
}

func TestDuplicateDeliveries(t *testing.T) {
	e := newEnv(t)
	const extra = 2
	e.sim.SetFaults(Faults{DuplicateDeliveries: extra})
	// The receiver holds every request until all copies have arrived: sequential delivery
	// would never get there.
	var mu sync.Mutex
	all := make(chan struct{})
	count := 0
	e.recv.setRespond(func(int, received) int {
		mu.Lock()
		count++
		if count == extra+1 {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
			return 204
		case <-time.After(3 * time.Second):
			return 599
		}
	})
	e.signed("DUP")
	rs := []received{e.recv.wait(), e.recv.wait(), e.recv.wait()}
	waitFor(t, "copies done", func() bool {
		ds := e.sim.Deliveries()
		for _, d := range ds {
			if !d.Done {
				return false
			}
		}
		return len(ds) == extra+1
	})
	ds := e.sim.Deliveries()
	for i, d := range ds {
		if d.ID != ds[0].ID || d.Copy != i || len(d.Attempts) != 1 || d.Attempts[0].Status != 204 {
			t.Errorf("delivery %d: %+v", i, d)
		}
	}
	for _, r := range rs {
		n, _ := parseNotification(t, e.keys, r)
		if n.ID != ds[0].ID {
			t.Errorf("received id %s, want %s", n.ID, ds[0].ID)
		}
	}
}

func TestReorderSignTerminate(t *testing.T) {
	e := newEnv(t)
	e.sim.SetFaults(Faults{ReorderSignTerminate: true})
	c := e.signed("REORDER")
	// The simulator reports the sign held (it clears Held only once the
	// terminate has been delivered), and nothing reached the receiver.
	if d := e.sim.Deliveries(); len(d) != 1 || !d[0].Held || len(d[0].Attempts) != 0 {
		t.Fatalf("deliveries %+v, want the sign held without an attempt", d)
	}
	if e.sim.Idle() {
		t.Fatal("the simulator is idle: the held sign has no delivery waiting for the terminate")
	}
	if got := e.recv.all(); len(got) != 0 {
		t.Fatalf("sign delivered before the terminate: %d requests", len(got))
	}
	if _, err := e.sim.TerminateAsUser(context.Background(), c.ContractID); err != nil {
		t.Fatal(err)
	}
	first, _ := parseNotification(t, e.keys, e.recv.wait())
	second, _ := parseNotification(t, e.keys, e.recv.wait())
	if first.EventType != "PAPAY.TERMINATE" || second.EventType != "PAPAY.SIGN" {
		t.Errorf("order %s, %s; want terminate then sign", first.EventType, second.EventType)
	}
	waitFor(t, "sign delivered", func() bool { d := e.sim.Deliveries()[0]; return d.Done && !d.Held })
}

func TestDropDeliveries(t *testing.T) {
	e := newEnv(t)
	e.sim.SetFaults(Faults{DropDeliveries: true})
	c := e.signed("DROP")
	if _, err := e.sim.TerminateAsUser(context.Background(), c.ContractID); err != nil {
		t.Fatal(err)
	}
	// Dropped deliveries start no delivery at all: once the simulator is
	// idle, nothing was sent and nothing will be.
	waitFor(t, "deliveries to stop", e.sim.Idle)
	if got := e.recv.all(); len(got) != 0 {
		t.Errorf("%d notifications sent", len(got))
	}
	ds := e.sim.Deliveries()
	if len(ds) != 2 || !ds[0].Dropped || !ds[1].Dropped || len(ds[0].Attempts) != 0 || ds[1].EventType != "PAPAY.TERMINATE" {
		t.Errorf("deliveries %+v", ds)
	}
}

func TestProbeSignatures(t *testing.T) {
	e := newEnv(t)
	e.sim.SetFaults(Faults{ProbeSignatures: true})
	// A merchant that verifies: refuse the probe.
	e.recv.setRespond(func(_ int, r received) int {
		if strings.HasPrefix(r.header.Get("Wechatpay-Signature"), "WECHATPAY/SIGNTEST/") {
			return 401
		}
		return 204
	})
	e.signed("PROBE")
	probe, real := e.recv.wait(), e.recv.wait()
	if !strings.HasPrefix(probe.header.Get("Wechatpay-Signature"), "WECHATPAY/SIGNTEST/") {
		t.Fatalf("first request signature %q", probe.header.Get("Wechatpay-Signature"))
	}
	if string(probe.body) != string(real.body) {
		t.Error("probe body differs from the notification")
	}
	parseNotification(t, e.keys, real)
	waitFor(t, "done", func() bool { ds := e.sim.Deliveries(); return len(ds) == 2 && ds[1].Done })
	// Once the delivery goroutine has ended, the probe can no longer be retried.
	waitFor(t, "deliveries to stop", e.sim.Idle)
	ds := e.sim.Deliveries()
	if !ds[0].Probe || len(ds[0].Attempts) != 1 || ds[0].Attempts[0].Status != 401 || ds[0].Done || ds[0].GaveUp || ds[1].Probe {
		t.Errorf("deliveries %+v", ds)
	}
	if len(e.recv.all()) != 2 {
		t.Errorf("probe was retried: %d requests", len(e.recv.all()))
	}
}

func TestOverrideSerialOnNotifications(t *testing.T) {
	e := newEnv(t)
	e.sim.SetFaults(Faults{OverrideSerial: "PUB_KEY_ID_UNKNOWN"})
	a, err := e.sendUnchecked(e.signer().request(t, "POST", e.srv.URL+"/v3/global/papay/contracts/app-pre-entrust-sign", globalBody(t, "SERIAL", nil)))
	if err == nil || !strings.Contains(err.Error(), "not found") || a.status != 200 {
		t.Fatalf("answer with an unknown serial: %d, %v", a.status, err)
	}
	if _, err := e.sim.Sign(context.Background(), SignRequest{OutContractCode: "SERIAL"}); err != nil {
		t.Fatal(err)
	}
	if got := e.recv.wait().header.Get("Wechatpay-Serial"); got != "PUB_KEY_ID_UNKNOWN" {
		t.Errorf("Wechatpay-Serial %q", got)
	}
}

func TestPublicKeyIDMode(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.PlatformSerial = keys(t).PublicKeyID })
	e.signed("PUBKEY") // answers are verified with the public key id by the helper
	r := e.recv.wait()
	if r.header.Get("Wechatpay-Serial") != e.keys.PublicKeyID {
		t.Errorf("serial %q", r.header.Get("Wechatpay-Serial"))
	}
	parseNotification(t, e.keys, r)
}

func TestCloseStopsDeliveries(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.TimeScale = 1 })
	e.recv.setRespond(func(int, received) int { return 500 })
	e.signed("CLOSE")
	e.recv.wait()
	done := make(chan struct{})
	go func() { e.sim.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not stop a delivery waiting 15s for its retry")
	}
	if _, err := e.sim.TerminateAsUser(context.Background(), e.sim.Contracts()[0].ContractID); err != nil {
		t.Fatal(err) // state changes still work; nothing is delivered
	}
	if n := len(e.sim.Deliveries()); n != 1 {
		t.Errorf("%d deliveries after Close", n)
	}
	if d := e.sim.Deliveries()[0]; d.GaveUp || d.Done || len(d.Attempts) != 1 {
		t.Errorf("delivery %+v", d)
	}
}
