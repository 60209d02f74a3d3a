package delivery_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contractd/contractd/delivery"
	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/webhook"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// clock is a test's clock: the real one moved on by what the test adds.
type clock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// v1s returns the v1 entries of a signature header.
func v1s(sig string) []string {
	var out []string
	for _, part := range strings.Split(sig, ",") {
		if v, ok := strings.CutPrefix(part, "v1="); ok {
			out = append(out, v)
		}
	}
	return out
}

// sigFor is the v1 of secret over body at the header's t.
func sigFor(t *testing.T, sig string, body []byte, secret string) string {
	t.Helper()
	ts, _, _ := strings.Cut(strings.TrimPrefix(sig, "t="), ",")
	var unix int64
	if err := json.Unmarshal([]byte(ts), &unix); err != nil {
		t.Fatalf("signature %q: %v", sig, err)
	}
	return v1s(webhook.Sign(time.Unix(unix, 0), body, secret))[0]
}

// After a rotation both the new and the previous secret sign every
// attempt, each with a fresh t; once 24 hours have passed on the
// service's clock only the new one does.
func TestRotationSignsWithBothSecretsFor24Hours(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	e := newEnv(t, delivery.Options{Now: clk.now})
	ctx := context.Background()
	rcv := newReceiver(t)
	created, err := e.svc.Create(ctx, "ops:test", domain.EndpointInput{URL: rcv.URL})
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := e.svc.RotateSecret(ctx, "ops:test", created.Endpoint.ID)
	if err != nil || rotated.Secret == created.Secret || !strings.HasPrefix(rotated.Secret, "whsec_") {
		t.Fatalf("rotate: %v", err)
	}
	ping := func() request {
		t.Helper()
		a, err := e.svc.Test(ctx, "ops:test", created.Endpoint.ID)
		if err != nil || a.Status != 200 || a.Kind != domain.DeliveryPing {
			t.Fatalf("test: %+v %v", a, err)
		}
		ds := rcv.deliveries()
		return ds[len(ds)-1]
	}
	d := ping()
	sig := d.Header.Get(webhook.SignatureHeader)
	if got := v1s(sig); len(got) != 2 || got[0] != sigFor(t, sig, d.Body, rotated.Secret) || got[1] != sigFor(t, sig, d.Body, created.Secret) {
		t.Fatalf("during the overlap %q: want the new then the previous secret's", sig)
	}
	clk.advance(domain.RotationOverlap - time.Minute)
	d = ping()
	if got := v1s(d.Header.Get(webhook.SignatureHeader)); len(got) != 2 {
		t.Fatalf("a minute before the overlap ends: %d signatures", len(got))
	}
	clk.advance(2 * time.Minute)
	d = ping()
	sig = d.Header.Get(webhook.SignatureHeader)
	if got := v1s(sig); len(got) != 1 || got[0] != sigFor(t, sig, d.Body, rotated.Secret) {
		t.Fatalf("after 24 hours %q: want the new secret's alone", sig)
	}
}

// A ping is a batch of type ping with no events and a delivery id of its
// own, answered with its attempt and recorded as kind ping.
func TestPing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, delivery.Options{})
	ctx := context.Background()
	rcv := newReceiver(t)
	rcv.answer = func(*request) int {
		time.Sleep(30 * time.Millisecond)
		return http.StatusOK
	}
	created, err := e.svc.Create(ctx, "ops:test", domain.EndpointInput{URL: rcv.URL})
	if err != nil {
		t.Fatal(err)
	}
	a, err := e.svc.Test(ctx, "ops:test", created.Endpoint.ID)
	if err != nil || a.Kind != domain.DeliveryPing || a.Status != 200 || a.Response != "thanks" || a.EventCount != 0 || a.LatencyMS < 30 {
		t.Fatalf("ping %+v %v", a, err)
	}
	d := rcv.deliveries()[0]
	if d.Batch.Type != "ping" || d.Batch.DeliveryID != a.DeliveryID || d.Header.Get(webhook.DeliveryHeader) != a.DeliveryID ||
		!bytes.Contains(d.Body, []byte(`"events":[]`)) || d.Batch.EndpointID != created.Endpoint.ID {
		t.Fatalf("ping body %s", d.Body)
	}
	atts, _, err := e.svc.Attempts(ctx, created.Endpoint.ID, "", 10)
	if err != nil || len(atts) != 1 || atts[0].Kind != domain.DeliveryPing || atts[0].DeliveryID != a.DeliveryID || atts[0].LatencyMS != a.LatencyMS {
		t.Fatalf("attempts %+v %v", atts, err)
	}
	if _, err := e.svc.Test(ctx, "ops:test", "0b1f7c3e-6a59-4c43-9d55-2f1f0f6b9a10"); !domain.IsCode(err, domain.CodeResourceNotFound) {
		t.Fatalf("ping of an unknown endpoint: %v", err)
	}
	if ep, err := e.svc.Get(ctx, created.Endpoint.ID); err != nil || ep.LastAttempt == nil || ep.LastAttempt.Status != 200 || ep.LastAttempt.LatencyMS != a.LatencyMS {
		t.Fatalf("last attempt %+v %v", ep.LastAttempt, err)
	}
}

// Without CONTRACTD_WEBHOOK_KEY creating an endpoint or rotating a secret
// is INVALID_STATE naming the variable; reading works.
func TestWebhooksOffWithoutKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, delivery.Options{})
	off, err := delivery.New(e.st, delivery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	created, err := e.svc.Create(ctx, "ops:test", domain.EndpointInput{URL: "https://app.example/h"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := off.Create(ctx, "ops:test", domain.EndpointInput{URL: "https://app.example/h"}); !domain.IsCode(err, domain.CodeInvalidState) ||
		!strings.Contains(err.Error(), "CONTRACTD_WEBHOOK_KEY") {
		t.Fatalf("create without a key: %v", err)
	}
	if _, err := off.RotateSecret(ctx, "ops:test", created.Endpoint.ID); !domain.IsCode(err, domain.CodeInvalidState) ||
		!strings.Contains(err.Error(), "CONTRACTD_WEBHOOK_KEY") {
		t.Fatalf("rotate without a key: %v", err)
	}
	if list, err := off.List(ctx); err != nil || len(list) != 1 || off.Enabled() || !e.svc.Enabled() {
		t.Fatalf("list without a key: %v %v", list, err)
	}
	if _, err := delivery.New(e.st, delivery.Options{Key: []byte("short")}); err == nil {
		t.Fatal("a key of 5 bytes was taken")
	}
}

// Targets: loopback, link-local and unspecified addresses (literal or
// resolved) are refused without the setting, on create and update, as
// PARAM_ERROR on url; private ranges are allowed. A connection is checked
// again as it is dialled, so that a target that resolves elsewhere later
// cannot reach loopback; redirects are not followed (a 3xx fails).
func TestTargets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, delivery.Options{})
	strict, err := delivery.New(e.st, delivery.Options{Key: e.key})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, url := range []string{"http://127.0.0.1:9/h", "http://localhost/h", "http://[::1]/h", "http://169.254.169.254/latest",
		"http://[fe80::1]/h", "http://0.0.0.0/h", "http://[::ffff:127.0.0.1]/h", "http://127.1.2.3/h"} {
		_, err := strict.Create(ctx, "ops:test", domain.EndpointInput{URL: url})
		var de *domain.Error
		if !domain.IsCode(err, domain.CodeParamError) || !asDomain(err, &de) || len(de.Fields) != 1 || de.Fields[0].Field != "url" {
			t.Errorf("create %s: %v, want PARAM_ERROR on url", url, err)
		}
	}
	for _, url := range []string{"http://10.1.2.3/h", "https://192.168.1.10:8443/h", "http://172.16.0.1/h"} {
		if _, err := strict.Create(ctx, "ops:test", domain.EndpointInput{URL: url}); err != nil {
			t.Errorf("create %s: %v, want allowed", url, err)
		}
	}
	private, err := strict.Create(ctx, "ops:test", domain.EndpointInput{URL: "http://10.9.9.9/h"})
	if err != nil {
		t.Fatal(err)
	}
	loop := "http://127.0.0.1:9/h"
	if _, err := strict.Update(ctx, "ops:test", private.Endpoint.ID, domain.EndpointPatch{URL: &loop}); !domain.IsCode(err, domain.CodeParamError) {
		t.Fatalf("update to loopback: %v", err)
	}

	// Dial-time check: an endpoint on loopback (registered where it was
	// allowed) is refused by a service that does not allow it.
	rcv := newReceiver(t)
	created, err := e.svc.Create(ctx, "ops:test", domain.EndpointInput{URL: rcv.URL})
	if err != nil {
		t.Fatal(err)
	}
	a, err := strict.Test(ctx, "ops:test", created.Endpoint.ID)
	if err != nil || a.Status != 0 || !strings.Contains(a.Error, "refused") || len(rcv.deliveries()) != 0 {
		t.Fatalf("a loopback dial without the setting: %+v %v (receiver got %d)", a, err, len(rcv.deliveries()))
	}

	// A redirect is a failure, never followed.
	target := newReceiver(t)
	redirecting := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusFound))
	t.Cleanup(redirecting.Close)
	red, err := e.svc.Create(ctx, "ops:test", domain.EndpointInput{URL: redirecting.URL})
	if err != nil {
		t.Fatal(err)
	}
	a, err = e.svc.Test(ctx, "ops:test", red.Endpoint.ID)
	if err != nil || a.Status != http.StatusFound || a.Accepted() || !strings.Contains(a.Error, "redirects are not followed") || len(target.deliveries()) != 0 {
		t.Fatalf("a redirect: %+v %v", a, err)
	}
}

func asDomain(err error, de **domain.Error) bool {
	e, ok := err.(*domain.Error)
	if ok {
		*de = e
	}
	return ok
}

// logBuffer collects log lines, safe for the workers' goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Deleting an endpoint while its attempt is in flight lets the attempt
// arrive and discards its result quietly (nothing recorded, nothing
// logged as a problem), and delivery to other endpoints goes on. Run
// returns when its context ends, releasing its leases. No secret is ever
// logged.
func TestDeleteMidAttemptDiscardsQuietly(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	e := newEnv(t, delivery.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx := context.Background()
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	held := newReceiver(t)
	held.answer = func(*request) int {
		once.Do(func() { close(arrived) })
		<-release
		return 200
	}
	other := newReceiver(t)
	h, err := e.svc.Create(ctx, "ops:test", domain.EndpointInput{URL: held.URL})
	if err != nil {
		t.Fatal(err)
	}
	o, err := e.svc.Create(ctx, "ops:test", domain.EndpointInput{URL: other.URL})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); e.svc.Run(runCtx) }()
	e.sign("d", 2)
	<-arrived
	if err := e.svc.Delete(ctx, "ops:test", h.Endpoint.ID); err != nil {
		t.Fatal(err)
	}
	close(release)
	waitFor(t, "the other endpoint to get both events", func() bool { return len(other.accepted()) == 2 })
	e.sign("d2", 1)
	waitFor(t, "the other endpoint to get the third", func() bool { return len(other.accepted()) == 3 })
	if n := countRows(t, e, `SELECT count(*) FROM webhook_attempts WHERE endpoint_id = $1`, h.Endpoint.ID); n != 0 {
		t.Fatalf("%d attempts kept for the deleted endpoint", n)
	}
	if _, err := e.svc.Get(ctx, h.Endpoint.ID); !domain.IsCode(err, domain.CodeResourceNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	stop()
	<-done
	if n := countRows(t, e, `SELECT count(*) FROM webhook_endpoints WHERE lease_token IS NOT NULL`); n != 0 {
		t.Fatalf("%d leases held after Run returned", n)
	}
	out := logs.String()
	if strings.Contains(out, "level=WARN") || strings.Contains(out, "level=ERROR") {
		t.Fatalf("problems logged:\n%s", out)
	}
	for _, secret := range []string{h.Secret, o.Secret} {
		if strings.Contains(out, secret) || strings.Contains(out, strings.TrimPrefix(secret, "whsec_")) {
			t.Fatal("a secret was logged")
		}
	}
	if n := countRows(t, e, `SELECT count(*) FROM webhook_endpoints WHERE position(convert_to($1, 'UTF8') in secret_sealed) > 0`, o.Secret); n != 0 {
		t.Fatal("a secret is stored in clear")
	}
}

func countRows(t *testing.T, e *env, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// Replay moves the cursor back (the events are sent again, in a new
// batch) or to a time, and records each move with its operator; a cursor
// this service did not issue is PARAM_ERROR; pausing stops deliveries and
// resuming restarts them.
func TestReplayPauseResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t, delivery.Options{})
	ctx := context.Background()
	rcv := newReceiver(t)
	created, err := e.svc.Create(ctx, "ops:test", domain.EndpointInput{URL: rcv.URL})
	if err != nil {
		t.Fatal(err)
	}
	e.run()
	e.sign("r", 3)
	want := e.feedFrom(created.Endpoint.Cursor, 3)
	waitFor(t, "three events", func() bool { return len(rcv.accepted()) == 3 })
	first := rcv.deliveries()[0].Batch.DeliveryID
	if _, err := e.svc.Replay(ctx, "ops:alice", created.Endpoint.ID, delivery.ReplayTarget{After: created.Endpoint.Cursor}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the three again", func() bool { return len(rcv.accepted()) == 6 })
	atTail := func() bool {
		ep, err := e.svc.Get(ctx, created.Endpoint.ID)
		return err == nil && ep.Cursor != "" && ep.LagEvents == 0 && !ep.InFlight()
	}
	waitFor(t, "the cursor at the tail", atTail)
	got := rcv.accepted()
	if !equalIDs(got[3:], want) || rcv.deliveries()[len(rcv.deliveries())-1].Batch.DeliveryID == first {
		t.Fatalf("replayed %v, want %v in a new batch", eventIDs(got[3:]), eventIDs(want))
	}
	if _, err := e.svc.Replay(ctx, "ops:alice", created.Endpoint.ID, delivery.ReplayTarget{After: "bogus"}); !domain.IsCode(err, domain.CodeParamError) {
		t.Fatalf("bogus cursor: %v", err)
	}
	if _, err := e.svc.Replay(ctx, "ops:bob", created.Endpoint.ID, delivery.ReplayTarget{From: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the three a third time", func() bool { return len(rcv.accepted()) == 9 })
	moves, err := e.st.CursorMoves(ctx, created.Endpoint.ID)
	if err != nil || len(moves) != 2 || moves[0].Actor != "ops:alice" || moves[1].Actor != "ops:bob" || moves[1].To != "" {
		t.Fatalf("moves %+v %v", moves, err)
	}

	paused := true
	if ep, err := e.svc.Update(ctx, "ops:test", created.Endpoint.ID, domain.EndpointPatch{Paused: &paused}); err != nil || !ep.Paused {
		t.Fatalf("pause: %+v %v", ep, err)
	}
	waitFor(t, "the lease to be given up", func() bool {
		return countRows(t, e, `SELECT count(*) FROM webhook_endpoints WHERE lease_token IS NOT NULL`) == 0
	})
	e.sign("p", 2)
	e.feedFrom("", 5)
	if ep, err := e.svc.Get(ctx, created.Endpoint.ID); err != nil || ep.LagEvents != 2 || len(rcv.accepted()) != 9 {
		t.Fatalf("paused: lag %d, received %d, %v", ep.LagEvents, len(rcv.accepted()), err)
	}
	paused = false
	if _, err := e.svc.Update(ctx, "ops:test", created.Endpoint.ID, domain.EndpointPatch{Paused: &paused}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the two after resuming", func() bool { return len(rcv.accepted()) == 11 })
}

func equalIDs(a, b []domain.HistoryEntry) bool {
	return strings.Join(eventIDs(a), ",") == strings.Join(eventIDs(b), ",")
}

// The metrics count attempts by outcome, time them, and show each held
// endpoint's lag.
func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := newEnv(t, delivery.Options{Registry: reg})
	ctx := context.Background()
	rcv := newReceiver(t)
	created, err := e.svc.Create(ctx, "ops:test", domain.EndpointInput{URL: rcv.URL})
	if err != nil {
		t.Fatal(err)
	}
	e.run()
	e.sign("m", 2)
	waitFor(t, "two events", func() bool { return len(rcv.accepted()) == 2 })
	waitFor(t, "the lag gauge", func() bool {
		n, err := testutil.GatherAndCount(reg, "contractd_webhook_lag_events", "contractd_webhook_lag_seconds")
		return err == nil && n == 2
	})
	if v := testutil.ToFloat64(prometheusCounter(t, reg, created.Endpoint.ID)); v < 1 {
		t.Fatalf("accepted deliveries %v", v)
	}
	if n, err := testutil.GatherAndCount(reg, "contractd_webhook_attempt_duration_seconds"); err != nil || n == 0 {
		t.Fatalf("latency series %d %v", n, err)
	}
}

// prometheusCounter is the accepted events deliveries' counter value as a
// collector.
func prometheusCounter(t *testing.T, reg *prometheus.Registry, _ string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
	for _, mf := range mfs {
		if mf.GetName() != "contractd_webhook_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == "events" && labels["outcome"] == "accepted" {
				g.Set(m.GetCounter().GetValue())
			}
		}
	}
	return g
}

// A cursor naming a feed row a failover lost (its position holds no row
// with its event id) moves to the last row still held before it, is
// logged and recorded as a move, and delivery goes on from there: nothing
// the database holds is skipped.
func TestLostCursorMovesBackAndDeliveryGoesOn(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	e := newEnv(t, delivery.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()
	rcv := newReceiver(t)
	e.sign("l", 3)
	rows := e.feedFrom("", 3)
	var tl, xid, id int64
	if err := e.db.Pool.QueryRow(ctx, `SELECT timeline, xid, id FROM contract_events WHERE event_id = $1`, rows[1].EventID).Scan(&tl, &xid, &id); err != nil {
		t.Fatal(err)
	}
	lost := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "f2:%d:%d:%d:%s", tl, xid, id, "0b1f7c3e-6a59-4c43-9d55-2f1f0f6b9a10"))
	created, err := e.svc.Create(ctx, "ops:test", domain.EndpointInput{URL: rcv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Replay(ctx, "ops:test", created.Endpoint.ID, delivery.ReplayTarget{After: lost}); err != nil {
		t.Fatal(err)
	}
	e.run()
	waitFor(t, "the rows from the last one held before the lost position", func() bool { return len(rcv.accepted()) == 2 })
	if got := rcv.accepted(); !equalIDs(got, rows[1:]) {
		t.Fatalf("received %v, want %v", eventIDs(got), eventIDs(rows[1:]))
	}
	moves, err := e.st.CursorMoves(ctx, created.Endpoint.ID)
	if err != nil || len(moves) != 2 || moves[1].From != lost || !strings.Contains(moves[1].Actor, "lost") {
		t.Fatalf("moves %+v %v", moves, err)
	}
	if !strings.Contains(logs.String(), "lost") {
		t.Fatalf("not logged:\n%s", logs.String())
	}
}

// The workers prune attempts past the retention, on the service's clock:
// those of 31 days ago go, those of 29 days ago stay.
func TestRunPrunesOldAttempts(t *testing.T) {
	t.Parallel()
	clk := &clock{}
	e := newEnv(t, delivery.Options{Now: clk.now})
	ctx := context.Background()
	created, err := e.svc.Create(ctx, "ops:test", domain.EndpointInput{URL: "http://10.9.9.9/h"})
	if err != nil {
		t.Fatal(err)
	}
	clk.advance(365 * 24 * time.Hour)
	for _, age := range []time.Duration{31 * 24 * time.Hour, 29 * 24 * time.Hour} {
		if _, _, err := e.st.RecordAttempt(ctx, domain.Attempt{EndpointID: created.Endpoint.ID, DeliveryID: "0b1f7c3e-6a59-4c43-9d55-2f1f0f6b9a10",
			Kind: domain.DeliveryPing, At: clk.now().Add(-age)}); err != nil {
			t.Fatal(err)
		}
	}
	e.run()
	waitFor(t, "the old attempt pruned", func() bool {
		return countRows(t, e, `SELECT count(*) FROM webhook_attempts`) == 1
	})
	atts, _, err := e.svc.Attempts(ctx, created.Endpoint.ID, "", 10)
	if err != nil || len(atts) != 1 || atts[0].At.Before(clk.now().Add(-domain.AttemptRetention)) {
		t.Fatalf("left %+v %v", atts, err)
	}
}
