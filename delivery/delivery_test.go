package delivery_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contractd/contractd/delivery"
	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/store"
	"github.com/contractd/contractd/webhook"
)

// env is a delivery service on a private schema.
type env struct {
	t   *testing.T
	db  *pgtest.Schema
	st  *store.Store
	svc *delivery.Service
	key []byte
}

// fast are the workers' timings tests use: the default lease, quicker
// polls and renewals.
func fast(o delivery.Options) delivery.Options {
	if o.PollInterval == 0 {
		o.PollInterval = 20 * time.Millisecond
	}
	if o.RenewInterval == 0 {
		o.RenewInterval = 200 * time.Millisecond
	}
	return o
}

func newEnv(t *testing.T, o delivery.Options) *env {
	t.Helper()
	db := pgtest.New(t)
	st := store.New(db.Pool)
	if o.Key == nil {
		o.Key = make([]byte, 32)
		_, _ = rand.Read(o.Key)
	}
	o.AllowLoopback = true
	svc, err := delivery.New(st, fast(o))
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, db: db, st: st, svc: svc, key: o.Key}
}

// run runs the workers until the test ends.
func (e *env) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.svc.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

func i64(v int64) *int64 { return &v }

// sign stores n contracts prefix-0 .. prefix-(n-1) and signs each: one
// history row apiece.
func (e *env) sign(prefix string, n int) {
	e.t.Helper()
	ctx := context.Background()
	for i := range n {
		code := fmt.Sprintf("%s-%d", prefix, i)
		exp := time.Now().Add(time.Hour)
		c := domain.Contract{OutContractCode: code, Product: domain.ProductPapay, Channel: domain.ChannelApp,
			PlanID: i64(123), UserDisplayName: "Zhang San", State: domain.StateSessionIssued,
			SessionID: "sess-" + code, SessionExpiresAt: &exp}
		if _, err := e.st.Create(ctx, c); err != nil {
			e.t.Fatal(err)
		}
		if _, err := e.st.Update(ctx, c.Key(), func(c *domain.Contract) error {
			_, err := c.Apply(ctx, domain.Change{Event: domain.EventSign, Source: domain.SourceNotification,
				ContractID: "wx-" + code, OpenID: "o-" + code, Details: map[string]any{}}, time.Now())
			return err
		}); err != nil {
			e.t.Fatal(err)
		}
	}
}

// feedFrom reads want rows of the feed after cursor, waiting for the
// horizon (other tests' transactions hold it back).
func (e *env) feedFrom(cursor string, want int) []domain.HistoryEntry {
	e.t.Helper()
	var out []domain.HistoryEntry
	deadline := time.Now().Add(time.Minute)
	for len(out) < want {
		page, err := e.st.Feed(context.Background(), cursor, 100)
		if err != nil {
			e.t.Fatal(err)
		}
		out, cursor = append(out, page.Items...), page.Next
		if len(page.Items) == 0 {
			if time.Now().After(deadline) {
				e.t.Fatalf("the feed shows %d of %d rows after a minute", len(out), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return out
}

// request is one request a receiver got.
type request struct {
	Header http.Header
	Body   []byte
	Batch  struct {
		Type       string                `json:"type"`
		EndpointID string                `json:"endpoint_id"`
		DeliveryID string                `json:"delivery_id"`
		Events     []domain.HistoryEntry `json:"events"`
		NextCursor string                `json:"next_cursor"`
	}
	Start, End time.Time
	Status     int
}

// receiver is a real HTTP server that records every delivery and answers
// with what answer says (200 when nil).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []request
	answer func(d *request) int
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		d := request{Header: req.Header.Clone(), Start: time.Now()}
		d.Body, _ = io.ReadAll(req.Body)
		if err := json.Unmarshal(d.Body, &d.Batch); err != nil {
			t.Errorf("receiver: %v: %s", err, d.Body)
		}
		r.mu.Lock()
		answer := r.answer
		r.mu.Unlock()
		d.Status = http.StatusOK
		if answer != nil {
			d.Status = answer(&d)
		}
		d.End = time.Now()
		r.mu.Lock()
		r.got = append(r.got, d)
		r.mu.Unlock()
		w.WriteHeader(d.Status)
		_, _ = io.WriteString(w, "thanks")
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) deliveries() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// accepted returns the events of the accepted deliveries, in the order
// they arrived.
func (r *receiver) accepted() []domain.HistoryEntry {
	var out []domain.HistoryEntry
	for _, d := range r.deliveries() {
		if d.Status/100 == 2 {
			out = append(out, d.Batch.Events...)
		}
	}
	return out
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after a minute: still waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func eventIDs(hs []domain.HistoryEntry) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.EventID
	}
	return out
}

// An endpoint starts at the feed's tail: rows written before it was
// created are not sent; those written after are, in feed order, in a POST
// signed with its secret, with the delivery id in its header, the events
// exactly as GET /v1/events answers them, and next_cursor the cursor after
// the last. The endpoint's cursor then is that next_cursor, and the
// attempt is listed.
func TestDeliversTheFeedAfterCreationInOrderSigned(t *testing.T) {
	t.Parallel()
	e := newEnv(t, delivery.Options{})
	ctx := context.Background()
	e.sign("before", 3)
	e.feedFrom("", 3)
	rcv := newReceiver(t)
	created, err := e.svc.Create(ctx, "ops:test", domain.EndpointInput{URL: rcv.URL + "/hook", Description: "app"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.Secret, "whsec_") || created.Endpoint.Cursor == "" {
		t.Fatalf("created %+v", created)
	}
	start := created.Endpoint.Cursor
	e.run()
	e.sign("after", 5)
	want := e.feedFrom(start, 5)
	waitFor(t, "five events", func() bool { return len(rcv.accepted()) >= 5 })
	got := rcv.accepted()
	if !slices.Equal(eventIDs(got), eventIDs(want)) {
		t.Fatalf("received %v, want %v", eventIDs(got), eventIDs(want))
	}
	wantJSON, _ := json.Marshal(want)
	gotJSON, _ := json.Marshal(got)
	if string(wantJSON) != string(gotJSON) {
		t.Fatalf("events differ from the feed's:\n%s\n%s", gotJSON, wantJSON)
	}
	var last request
	for _, d := range rcv.deliveries() {
		if d.Batch.Type != "events" || d.Batch.EndpointID != created.Endpoint.ID || d.Header.Get(webhook.DeliveryHeader) != d.Batch.DeliveryID ||
			d.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("delivery %+v", d)
		}
		sig := d.Header.Get(webhook.SignatureHeader)
		var ts int64
		if _, err := fmt.Sscanf(sig, "t=%d,", &ts); err != nil {
			t.Fatalf("signature %q: %v", sig, err)
		}
		if want := webhook.Sign(time.Unix(ts, 0), d.Body, created.Secret); sig != want {
			t.Fatalf("signature %q, want %q", sig, want)
		}
		last = d
	}
	waitFor(t, "the cursor to move", func() bool {
		ep, err := e.svc.Get(ctx, created.Endpoint.ID)
		return err == nil && ep.Cursor == last.Batch.NextCursor && ep.LagEvents == 0 && ep.LastAttempt != nil && ep.LastAttempt.Status == 200
	})
	atts, _, err := e.svc.Attempts(ctx, created.Endpoint.ID, "", 100)
	if err != nil || len(atts) != len(rcv.deliveries()) || atts[0].DeliveryID != last.Batch.DeliveryID || atts[0].Response != "thanks" {
		t.Fatalf("attempts %+v %v", atts, err)
	}
}
