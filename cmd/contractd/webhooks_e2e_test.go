package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contractd/contractd/webhook"
)

// Helpers of the webhook endpoint tests (prefix wh).

// whWait is how long a test waits for a delivery to arrive: generous, for
// a busy machine (the delivery workers poll every 200 ms).
const whWait = 60 * time.Second

// whStack starts a stack with webhooks on (a fresh CONTRACTD_WEBHOOK_KEY),
// loopback targets allowed or not, alice as a named ops token holder, and
// contractd's logs captured in logs (when not nil).
func whStack(t *testing.T, allowLoopback bool, logs io.Writer) *stack {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return startStack(t, stackOptions{LogOut: logs, Env: map[string]string{
		"CONTRACTD_API_TOKENS":             "app:" + appToken + ",ops:" + opsToken + ",ops:alice:" + aliceToken,
		"CONTRACTD_WEBHOOK_KEY":            base64.StdEncoding.EncodeToString(key),
		"CONTRACTD_WEBHOOK_ALLOW_LOOPBACK": strconv.FormatBool(allowLoopback),
	}})
}

// whEndpoint is an endpoint as the API answers it (with the secret in the
// answers of creation and rotation).
type whEndpoint struct {
	ID          string  `json:"id"`
	URL         string  `json:"url"`
	Description string  `json:"description"`
	Paused      bool    `json:"paused"`
	CreatedAt   string  `json:"created_at"`
	Cursor      string  `json:"cursor"`
	LagEvents   int64   `json:"lag_events"`
	LagSeconds  float64 `json:"lag_seconds"`
	LastAttempt *struct {
		At        string `json:"at"`
		Status    int    `json:"status"`
		Error     string `json:"error"`
		LatencyMS int    `json:"latency_ms"`
	} `json:"last_attempt"`
	Secret *string `json:"secret"`
}

// whAttempt is an attempt as the API answers it.
type whAttempt struct {
	DeliveryID string `json:"delivery_id"`
	Kind       string `json:"kind"`
	EventCount int    `json:"event_count"`
	At         string `json:"at"`
	Status     int    `json:"status"`
	LatencyMS  int    `json:"latency_ms"`
	Error      string `json:"error"`
	Response   string `json:"response"`
}

// whEvent is a feed row, as GET /v1/events and deliveries carry it.
type whEvent struct {
	ID              int64  `json:"id"`
	EventID         string `json:"event_id"`
	ContractVersion int64  `json:"contract_version"`
	OutContractCode string `json:"out_contract_code"`
	Event           string `json:"event"`
}

// whDelivery is one POST the receiver took.
type whDelivery struct {
	Signature  string
	DeliveryH  string
	Body       []byte
	Type       string    `json:"type"`
	EndpointID string    `json:"endpoint_id"`
	DeliveryID string    `json:"delivery_id"`
	Events     []whEvent `json:"events"`
	NextCursor string    `json:"next_cursor"`
}

// whReceiver is a merchant's app server: a real HTTP server that keeps
// every POST it accepts, in arrival order.
type whReceiver struct {
	*httptest.Server
	mu  sync.Mutex
	got []whDelivery
	bad []string // POSTs it could not decode
}

func newWHReceiver(t *testing.T) *whReceiver {
	r := &whReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		d := whDelivery{Signature: req.Header.Get(webhook.SignatureHeader), DeliveryH: req.Header.Get(webhook.DeliveryHeader), Body: body}
		if err == nil {
			err = json.Unmarshal(body, &d)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil || req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
			r.bad = append(r.bad, fmt.Sprintf("%s %s %q: %v", req.Method, req.Header.Get("Content-Type"), body, err))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.got = append(r.got, d)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("thanks"))
	}))
	t.Cleanup(r.Close)
	return r
}

// deliveries returns what the receiver accepted so far, and fails the test
// on any POST it could not decode.
func (r *whReceiver) deliveries(t *testing.T) []whDelivery {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bad) > 0 {
		t.Fatalf("the receiver got POSTs that are not deliveries: %q", r.bad)
	}
	return slices.Clone(r.got)
}

// arrivals counts how many times each event_id arrived in events batches.
func (r *whReceiver) arrivals(t *testing.T) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, d := range r.deliveries(t) {
		for _, e := range d.Events {
			n[e.EventID]++
		}
	}
	return n
}

// pings returns the ping batches the receiver accepted.
func (r *whReceiver) pings(t *testing.T) []whDelivery {
	t.Helper()
	var out []whDelivery
	for _, d := range r.deliveries(t) {
		if d.Type == "ping" {
			out = append(out, d)
		}
	}
	return out
}

// whSignedBy reports, for each secret, whether the Contractd-Signature
// header holds its v1 of body, recomputed with webhook.Sign at the header's
// own t; and how many v1 entries the header holds.
func whSignedBy(t *testing.T, header string, body []byte, secrets ...string) (signed []bool, entries int) {
	t.Helper()
	parts := strings.Split(header, ",")
	ts, ok := strings.CutPrefix(parts[0], "t=")
	unix, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil {
		t.Fatalf("Contractd-Signature %q does not start with t=<unix seconds>", header)
	}
	var v1s []string
	for _, p := range parts[1:] {
		v, ok := strings.CutPrefix(p, "v1=")
		if !ok {
			t.Fatalf("Contractd-Signature %q holds %q", header, p)
		}
		v1s = append(v1s, v)
	}
	for _, s := range secrets {
		want := strings.TrimPrefix(webhook.Sign(time.Unix(unix, 0), body, s), "t="+ts+",v1=")
		signed = append(signed, slices.Contains(v1s, want))
	}
	return signed, len(v1s)
}

// whFeed reads the whole feed after cursor through GET /v1/events and
// returns its rows and the cursor after the last.
func whFeed(t *testing.T, s *stack, after string) ([]whEvent, string) {
	t.Helper()
	var all []whEvent
	for {
		var page struct {
			Items []whEvent `json:"items"`
			Next  string    `json:"next_cursor"`
		}
		r := s.do(http.MethodGet, "/v1/events?limit=500&after="+after, opsToken, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("GET /v1/events: %d %s", r.Status, r.Body)
		}
		r.JSON(t, &page)
		all = append(all, page.Items...)
		if len(page.Items) == 0 {
			return all, after
		}
		after = page.Next
	}
}

// whEventIDs lists the event_ids of rows, optionally only code's.
func whEventIDs(rows []whEvent, code string) []string {
	var out []string
	for _, e := range rows {
		if code == "" || e.OutContractCode == code {
			out = append(out, e.EventID)
		}
	}
	return out
}

// whSignContract pre-signs code and has the user sign it: two feed rows
// (issue_session, sign), waited for until GET /v1/events shows both (the
// feed holds rows back while an older transaction may still write).
func whSignContract(t *testing.T, s *stack, code string) {
	t.Helper()
	ntPreSign(t, s, code)
	ntSign(t, s, code)
	eventually(t, whWait, code+"'s two rows in the feed", func() bool {
		rows, _ := whFeed(t, s, "")
		return len(whEventIDs(rows, code)) == 2
	})
}

// whGet reads an endpoint, failing the test unless it answers 200.
func whGet(t *testing.T, s *stack, id string) whEndpoint {
	t.Helper()
	r := s.do(http.MethodGet, "/v1/webhook-endpoints/"+id, opsToken, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET endpoint %s: %d %s", id, r.Status, r.Body)
	}
	var e whEndpoint
	r.JSON(t, &e)
	return e
}

// whPatch updates an endpoint, failing the test unless it answers 200.
func whPatch(t *testing.T, s *stack, id string, body map[string]any) whEndpoint {
	t.Helper()
	r := s.do(http.MethodPatch, "/v1/webhook-endpoints/"+id, aliceToken, body)
	if r.Status != http.StatusOK {
		t.Fatalf("PATCH endpoint %s %v: %d %s", id, body, r.Status, r.Body)
	}
	var e whEndpoint
	r.JSON(t, &e)
	return e
}

// whCaughtUp waits until the endpoint has delivered the whole feed: no
// lag, and no row of GET /v1/events after its cursor.
func whCaughtUp(t *testing.T, s *stack, id string) whEndpoint {
	t.Helper()
	var e whEndpoint
	eventually(t, whWait, "the endpoint to deliver the whole feed", func() bool {
		e = whGet(t, s, id)
		rows, _ := whFeed(t, s, e.Cursor)
		return e.LagEvents == 0 && len(rows) == 0
	})
	return e
}

// whTableText is every row of table read as text, for looking a secret up.
func whTableText(t *testing.T, s *stack, table string) string {
	t.Helper()
	rows, err := s.DB.Pool.Query(context.Background(), `SELECT t::text FROM `+table+` t`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		b.WriteString(v)
		b.WriteByte('\n')
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var whSecretShape = regexp.MustCompile(`^whsec_[A-Za-z0-9_-]{43}=?$`)

// Every route of /v1/webhook-endpoints on its happy path, against a real
// receiver: creation answers the secret once; a test ping and the feed's
// rows arrive signed with it (webhook.Sign recomputed), in feed order;
// pause stops deliveries and resume restarts them; replay back resends and
// replay forward skips, recorded with the operator; a rotation signs with
// both secrets; attempts page newest first; delete forgets the endpoint.
// Neither secret appears in the logs, the list and get answers, or any
// column of the endpoints' tables read as text.
func TestWebhookEndpointsEndToEnd(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	s := whStack(t, true, logs)
	recv := newWHReceiver(t)

	// Create, as alice.
	r := s.do(http.MethodPost, "/v1/webhook-endpoints", aliceToken, map[string]any{"url": recv.URL + "/hooks", "description": "order service"})
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var created whEndpoint
	r.JSON(t, &created)
	if created.Secret == nil || !whSecretShape.MatchString(*created.Secret) {
		t.Fatalf("create answered secret %v: %s", created.Secret, r.Body)
	}
	secret := *created.Secret
	if created.URL != recv.URL+"/hooks" || created.Description != "order service" || created.Paused || created.LastAttempt != nil || created.LagEvents != 0 {
		t.Fatalf("created %+v", created)
	}
	id := created.ID
	if n := s.count(`SELECT count(*) FROM webhook_endpoints WHERE id = $1 AND created_by = 'alice'`, id); n != 1 {
		t.Fatalf("%d endpoints %s created by alice", n, id)
	}
	// The feed is empty yet; the cursor must be one GET /v1/events takes.
	if rows, _ := whFeed(t, s, created.Cursor); len(rows) != 0 {
		t.Fatalf("a new endpoint starts at cursor %q, with %d feed rows after it", created.Cursor, len(rows))
	}
	secrets := []string{secret}

	// Get and list show it without the secret.
	showsNoSecret := func(r response) {
		t.Helper()
		for _, sec := range secrets {
			if strings.Contains(string(r.Body), sec) {
				t.Fatalf("an answer shows a secret: %s", r.Body)
			}
		}
		if strings.Contains(string(r.Body), `"secret"`) {
			t.Fatalf("an answer has a secret field: %s", r.Body)
		}
	}
	got := s.do(http.MethodGet, "/v1/webhook-endpoints/"+id, opsToken, nil)
	showsNoSecret(got)
	var one whEndpoint
	got.JSON(t, &one)
	if got.Status != http.StatusOK || one.ID != id || one.URL != created.URL || one.CreatedAt != created.CreatedAt {
		t.Fatalf("get: %d %s", got.Status, got.Body)
	}
	list := s.do(http.MethodGet, "/v1/webhook-endpoints", opsToken, nil)
	showsNoSecret(list)
	var page struct {
		Items []whEndpoint `json:"items"`
	}
	list.JSON(t, &page)
	if list.Status != http.StatusOK || len(page.Items) != 1 || page.Items[0].ID != id {
		t.Fatalf("list: %d %s", list.Status, list.Body)
	}

	// A test ping arrives signed with the secret; the answer is its attempt.
	testPing := func(want ...string) whAttempt {
		t.Helper()
		before := len(recv.pings(t))
		r := s.do(http.MethodPost, "/v1/webhook-endpoints/"+id+"/test", aliceToken, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("test: %d %s", r.Status, r.Body)
		}
		var at whAttempt
		r.JSON(t, &at)
		if at.Kind != "ping" || at.Status != http.StatusOK || at.Error != "" || at.EventCount != 0 || at.Response != "thanks" {
			t.Fatalf("test answered %+v", at)
		}
		pings := recv.pings(t)
		if len(pings) != before+1 {
			t.Fatalf("%d pings arrived, want %d", len(pings), before+1)
		}
		p := pings[len(pings)-1]
		if p.DeliveryID != at.DeliveryID || p.DeliveryH != at.DeliveryID || p.EndpointID != id || len(p.Events) != 0 {
			t.Fatalf("ping %s (header %s, endpoint %s, %d events), attempt %s", p.DeliveryID, p.DeliveryH, p.EndpointID, len(p.Events), at.DeliveryID)
		}
		signed, entries := whSignedBy(t, p.Signature, p.Body, want...)
		if entries != len(want) || slices.Contains(signed, false) {
			t.Fatalf("ping signature %q: signed by each secret %v, %d entries, want %d", p.Signature, signed, entries, len(want))
		}
		return at
	}
	testPing(secret)

	// The feed's rows arrive, in feed order, each batch signed.
	whSignContract(t, s, "wh-a")
	whCaughtUp(t, s, id)
	feed, _ := whFeed(t, s, created.Cursor)
	checkDeliveries := func() {
		t.Helper()
		for _, d := range recv.deliveries(t) {
			if d.Type == "ping" {
				continue
			}
			if d.Type != "events" || d.EndpointID != id || d.DeliveryH != d.DeliveryID || len(d.Events) == 0 || len(d.Events) > 100 {
				t.Fatalf("delivery %s: type %q, endpoint %s, header %s, %d events", d.DeliveryID, d.Type, d.EndpointID, d.DeliveryH, len(d.Events))
			}
			if signed, entries := whSignedBy(t, d.Signature, d.Body, secret); !signed[0] || entries != 1 {
				t.Fatalf("delivery %s: signature %q does not verify with the secret", d.DeliveryID, d.Signature)
			}
		}
	}
	checkDeliveries()
	var order []string
	for _, d := range recv.deliveries(t) {
		order = append(order, whEventIDs(d.Events, "")...)
	}
	if want := whEventIDs(feed, ""); len(want) < 2 || !slices.Equal(order, want) {
		t.Fatalf("the receiver got %q, the feed since creation is %q", order, want)
	}
	last := whGet(t, s, id).LastAttempt
	if last == nil || last.Status != http.StatusOK || last.Error != "" {
		t.Fatalf("last attempt %+v", last)
	}

	// Paused, nothing is delivered; resumed, the rows arrive.
	if e := whPatch(t, s, id, map[string]any{"paused": true}); !e.Paused {
		t.Fatalf("PATCH paused: %+v", e)
	}
	cursor := whGet(t, s, id).Cursor
	whSignContract(t, s, "wh-b")
	eventually(t, whWait, "the lag to count wh-b's rows", func() bool { return whGet(t, s, id).LagEvents >= 2 })
	// A paused endpoint has nothing to wait for: the test gives the
	// workers a few polls (200 ms each) to show it sends nothing.
	time.Sleep(time.Second)
	feed, _ = whFeed(t, s, cursor)
	bRows := whEventIDs(feed, "wh-b")
	for _, e := range bRows {
		if n := recv.arrivals(t)[e]; n != 0 {
			t.Fatalf("event %s of wh-b arrived %d times while the endpoint was paused", e, n)
		}
	}
	if e := whGet(t, s, id); e.Cursor != cursor || !e.Paused {
		t.Fatalf("paused endpoint moved from %q: %+v", cursor, e)
	}
	if e := whPatch(t, s, id, map[string]any{"paused": false, "description": "orders, resumed"}); e.Paused || e.Description != "orders, resumed" {
		t.Fatalf("PATCH resume: %+v", e)
	}
	whCaughtUp(t, s, id)
	for _, e := range bRows {
		if n := recv.arrivals(t)[e]; n != 1 {
			t.Fatalf("event %s of wh-b arrived %d times after the resume", e, n)
		}
	}

	// Replay back (from the creation time) resends every row since.
	feedAll, _ := whFeed(t, s, created.Cursor)
	aRows := whEventIDs(feedAll, "wh-a")
	r = s.do(http.MethodPost, "/v1/webhook-endpoints/"+id+"/replay", aliceToken, map[string]any{"from": created.CreatedAt})
	if r.Status != http.StatusOK {
		t.Fatalf("replay from %s: %d %s", created.CreatedAt, r.Status, r.Body)
	}
	eventually(t, whWait, "wh-a's rows to arrive again", func() bool {
		n := recv.arrivals(t)
		for _, e := range aRows {
			if n[e] < 2 {
				return false
			}
		}
		return true
	})
	whCaughtUp(t, s, id)

	// Replay forward skips: rows of wh-c, written while paused, are
	// skipped by moving the cursor past them; wh-d's then arrive.
	whPatch(t, s, id, map[string]any{"paused": true})
	whSignContract(t, s, "wh-c")
	skipped, tail := whFeed(t, s, whGet(t, s, id).Cursor)
	cRows := whEventIDs(skipped, "wh-c")
	if len(cRows) < 2 {
		t.Fatalf("wh-c's rows %v", skipped)
	}
	r = s.do(http.MethodPost, "/v1/webhook-endpoints/"+id+"/replay", aliceToken, map[string]any{"after": tail})
	var moved whEndpoint
	r.JSON(t, &moved)
	if r.Status != http.StatusOK || moved.Cursor != tail || moved.LagEvents != 0 {
		t.Fatalf("replay after the tail %q: %d %s", tail, r.Status, r.Body)
	}
	whPatch(t, s, id, map[string]any{"paused": false})
	whSignContract(t, s, "wh-d")
	whCaughtUp(t, s, id)
	feed, _ = whFeed(t, s, tail)
	dRows := whEventIDs(feed, "wh-d")
	n := recv.arrivals(t)
	for _, e := range dRows {
		if n[e] != 1 {
			t.Fatalf("event %s of wh-d arrived %d times", e, n[e])
		}
	}
	for _, e := range cRows {
		if n[e] != 0 {
			t.Fatalf("skipped event %s of wh-c arrived %d times", e, n[e])
		}
	}
	if n := s.count(`SELECT count(*) FROM webhook_cursor_moves WHERE endpoint_id = $1 AND actor = 'alice'`, id); n != 2 {
		t.Fatalf("%d cursor moves recorded with alice, want 2", n)
	}
	checkDeliveries()

	// Rotation answers a new secret; pings are signed by both.
	r = s.do(http.MethodPost, "/v1/webhook-endpoints/"+id+"/rotate-secret", aliceToken, nil)
	var rotated whEndpoint
	r.JSON(t, &rotated)
	if r.Status != http.StatusOK || rotated.ID != id || rotated.Secret == nil || !whSecretShape.MatchString(*rotated.Secret) || *rotated.Secret == secret {
		t.Fatalf("rotate: %d %s", r.Status, r.Body)
	}
	secrets = append(secrets, *rotated.Secret)
	newest := testPing(*rotated.Secret, secret)
	showsNoSecret(s.do(http.MethodGet, "/v1/webhook-endpoints/"+id, opsToken, nil))
	showsNoSecret(s.do(http.MethodGet, "/v1/webhook-endpoints", opsToken, nil))

	// Attempts page newest first.
	total := s.count(`SELECT count(*) FROM webhook_attempts WHERE endpoint_id = $1`, id)
	var attempts []whAttempt
	pages := 0
	for next := ""; ; pages++ {
		r := s.do(http.MethodGet, "/v1/webhook-endpoints/"+id+"/attempts?limit=2&cursor="+next, opsToken, nil)
		showsNoSecret(r)
		var p struct {
			Items []whAttempt `json:"items"`
			Next  string      `json:"next_cursor"`
		}
		r.JSON(t, &p)
		if r.Status != http.StatusOK || len(p.Items) > 2 || (p.Next != "" && len(p.Items) != 2) {
			t.Fatalf("attempts page %d: %d %s", pages, r.Status, r.Body)
		}
		attempts = append(attempts, p.Items...)
		if p.Next == "" {
			break
		}
		next = p.Next
	}
	if len(attempts) != total || total < 5 || pages < 2 {
		t.Fatalf("%d attempts in %d pages, %d in the database", len(attempts), pages+1, total)
	}
	if attempts[0].DeliveryID != newest.DeliveryID {
		t.Fatalf("the first attempt is %+v, the newest is the last ping %+v", attempts[0], newest)
	}
	for i := 1; i < len(attempts); i++ {
		prev, _ := time.Parse(time.RFC3339Nano, attempts[i-1].At)
		at, _ := time.Parse(time.RFC3339Nano, attempts[i].At)
		if at.After(prev) {
			t.Fatalf("attempt %d at %s is newer than attempt %d at %s", i, attempts[i].At, i-1, attempts[i-1].At)
		}
	}

	// The secrets appear nowhere else.
	for _, table := range []string{"webhook_endpoints", "webhook_attempts", "webhook_cursor_moves"} {
		text := whTableText(t, s, table)
		for _, sec := range secrets {
			if strings.Contains(text, sec) {
				t.Fatalf("table %s holds a secret in clear", table)
			}
		}
	}
	if !strings.Contains(whTableText(t, s, "webhook_endpoints"), id) {
		t.Fatal("the endpoints table read as text does not hold the endpoint")
	}
	logText := logs.String()
	if !strings.Contains(logText, "/v1/webhook-endpoints") {
		t.Fatalf("the captured logs do not show the webhook routes: %.500s", logText)
	}
	for _, sec := range secrets {
		if strings.Contains(logText, sec) {
			t.Fatal("the logs hold a secret")
		}
	}

	// Delete forgets the endpoint and its attempts.
	if r := s.do(http.MethodDelete, "/v1/webhook-endpoints/"+id, aliceToken, nil); r.Status != http.StatusNoContent || len(r.Body) != 0 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	for _, rq := range []request{
		{Method: http.MethodGet, Path: "/v1/webhook-endpoints/" + id},
		{Method: http.MethodGet, Path: "/v1/webhook-endpoints/" + id + "/attempts"},
		{Method: http.MethodPost, Path: "/v1/webhook-endpoints/" + id + "/test"},
		{Method: http.MethodDelete, Path: "/v1/webhook-endpoints/" + id},
	} {
		rq.Token = opsToken
		whExpectCode(t, call(t, s.URL, rq), http.StatusNotFound, "NOT_FOUND", "")
	}
	if n := s.count(`SELECT count(*) FROM webhook_endpoints`) + s.count(`SELECT count(*) FROM webhook_attempts`); n != 0 {
		t.Fatalf("%d endpoint and attempt rows after the delete", n)
	}
	list = s.do(http.MethodGet, "/v1/webhook-endpoints", opsToken, nil)
	if list.Status != http.StatusOK || strings.TrimSpace(string(list.Body)) != `{"items":[]}` {
		t.Fatalf("list after the delete: %d %s", list.Status, list.Body)
	}
}

// whExpectCode checks an error answer's status and code, and that it names
// field (when not "") and no other field.
func whExpectCode(t *testing.T, r response, status int, code, field string) edgeError {
	t.Helper()
	var e edgeError
	if err := json.Unmarshal(r.Body, &e); err != nil {
		t.Fatalf("%d %s: not JSON: %v", r.Status, r.Body, err)
	}
	if r.Status != status || e.Code != code || e.Message == "" {
		t.Fatalf("answer %d %s, want %d %s", r.Status, r.Body, status, code)
	}
	if field != "" && (len(e.Detail.Fields) != 1 || e.Detail.Fields[0].Field != field || e.Detail.Fields[0].Reason == "") {
		t.Fatalf("answer %s names fields %+v, want only %s", r.Body, e.Detail.Fields, field)
	}
	return e
}

// Acceptance point 4: a url that is malformed, not http(s), holds
// credentials, is too long, or targets loopback or link-local without
// CONTRACTD_WEBHOOK_ALLOW_LOOPBACK, or a description over 256 characters,
// is a 400 PARAM_ERROR naming the field, on creation and on update alike,
// and writes nothing. The secret of the endpoint that exists appears in no
// log line. The routes' other edges answer in our shape too.
func TestWebhookEndpointRulesAndEdges(t *testing.T) {
	t.Parallel()
	logs := &logBuffer{}
	s := whStack(t, false, logs)

	// An endpoint on a private address (allowed: app servers live there),
	// that no test delivery reaches.
	r := s.do(http.MethodPost, "/v1/webhook-endpoints", opsToken, map[string]any{"url": "https://10.255.255.1/hook"})
	if r.Status != http.StatusCreated {
		t.Fatalf("create on a private address: %d %s", r.Status, r.Body)
	}
	var existing whEndpoint
	r.JSON(t, &existing)
	id := existing.ID
	// What an operator's change would touch (the delivery workers keep
	// their lease in the same rows).
	rows := func() string {
		var v string
		err := s.DB.Pool.QueryRow(context.Background(), `SELECT count(*)::text || ' ' || coalesce(string_agg(
			concat_ws('|', id, url, description, paused, encode(secret_sealed, 'hex'), cursor, created_by, created_at), ',' ORDER BY id), '')
			FROM webhook_endpoints`).Scan(&v)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := rows()

	for _, tc := range []struct {
		name, url, description, field string
	}{
		{"malformed", "http://exa mple.com/", "", "url"},
		{"not absolute", "/hooks", "", "url"},
		{"no host", "https://", "", "url"},
		{"ftp", "ftp://example.com/hook", "", "url"},
		{"javascript", "javascript:alert(1)", "", "url"},
		{"credentials", "https://u:p@10.0.0.1/", "", "url"},
		{"user only", "https://u@10.0.0.1/", "", "url"},
		{"too long", "https://10.0.0.1/" + strings.Repeat("p", 2048), "", "url"},
		{"loopback v4", "http://127.0.0.1:1/", "", "url"},
		{"localhost", "http://localhost/", "", "url"},
		{"loopback v6", "http://[::1]/", "", "url"},
		{"link-local", "http://169.254.169.254/latest/meta-data/", "", "url"},
		{"description over 256", "https://10.0.0.1/hook", strings.Repeat("é", 257), "description"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(http.MethodPost, "/v1/webhook-endpoints", opsToken, map[string]any{"url": tc.url, "description": tc.description})
			whExpectCode(t, r, http.StatusBadRequest, "PARAM_ERROR", tc.field)
			patch := map[string]any{tc.field: tc.url}
			if tc.field == "description" {
				patch[tc.field] = tc.description
			}
			r = s.do(http.MethodPatch, "/v1/webhook-endpoints/"+id, opsToken, patch)
			whExpectCode(t, r, http.StatusBadRequest, "PARAM_ERROR", tc.field)
			if after := rows(); after != before {
				t.Fatalf("the endpoints table changed:\n%s\nwas\n%s", after, before)
			}
		})
	}

	unknown := "00000000-0000-4000-8000-000000000000"
	for _, tc := range []struct {
		name        string
		rq          request
		status      int
		code, field string
	}{
		{"no token", request{Method: http.MethodGet, Path: "/v1/webhook-endpoints"}, 401, "UNAUTHORIZED", ""},
		{"unknown token", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints", Token: "nope", Body: map[string]any{"url": "https://10.0.0.1/"}}, 401, "UNAUTHORIZED", ""},
		{"app token lists", request{Method: http.MethodGet, Path: "/v1/webhook-endpoints", Token: appToken}, 403, "FORBIDDEN", ""},
		{"app token creates", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints", Token: appToken, Body: map[string]any{"url": "https://10.0.0.1/"}}, 403, "FORBIDDEN", ""},
		{"app token gets", request{Method: http.MethodGet, Path: "/v1/webhook-endpoints/" + id, Token: appToken}, 403, "FORBIDDEN", ""},
		{"app token patches", request{Method: http.MethodPatch, Path: "/v1/webhook-endpoints/" + id, Token: appToken, Body: map[string]any{"paused": true}}, 403, "FORBIDDEN", ""},
		{"app token deletes", request{Method: http.MethodDelete, Path: "/v1/webhook-endpoints/" + id, Token: appToken}, 403, "FORBIDDEN", ""},
		{"app token rotates", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints/" + id + "/rotate-secret", Token: appToken}, 403, "FORBIDDEN", ""},
		{"app token replays", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints/" + id + "/replay", Token: appToken, Body: map[string]any{"after": ""}}, 403, "FORBIDDEN", ""},
		{"app token tests", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints/" + id + "/test", Token: appToken}, 403, "FORBIDDEN", ""},
		{"app token reads attempts", request{Method: http.MethodGet, Path: "/v1/webhook-endpoints/" + id + "/attempts", Token: appToken}, 403, "FORBIDDEN", ""},
		{"no token deletes", request{Method: http.MethodDelete, Path: "/v1/webhook-endpoints/" + id}, 401, "UNAUTHORIZED", ""},
		{"PUT on the collection", request{Method: http.MethodPut, Path: "/v1/webhook-endpoints", Token: opsToken}, 405, "METHOD_NOT_ALLOWED", ""},
		{"POST on an endpoint", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints/" + id, Token: opsToken}, 405, "METHOD_NOT_ALLOWED", ""},
		{"GET rotate-secret", request{Method: http.MethodGet, Path: "/v1/webhook-endpoints/" + id + "/rotate-secret", Token: opsToken}, 405, "METHOD_NOT_ALLOWED", ""},
		{"DELETE attempts", request{Method: http.MethodDelete, Path: "/v1/webhook-endpoints/" + id + "/attempts", Token: opsToken}, 405, "METHOD_NOT_ALLOWED", ""},
		{"unknown sub-path", request{Method: http.MethodGet, Path: "/v1/webhook-endpoints/" + id + "/nope", Token: opsToken}, 404, "NOT_FOUND", ""},
		{"unknown id", request{Method: http.MethodGet, Path: "/v1/webhook-endpoints/" + unknown, Token: opsToken}, 404, "NOT_FOUND", ""},
		{"malformed id", request{Method: http.MethodGet, Path: "/v1/webhook-endpoints/not-a-uuid", Token: opsToken}, 404, "NOT_FOUND", ""},
		{"malformed id patched", request{Method: http.MethodPatch, Path: "/v1/webhook-endpoints/x%27y", Token: opsToken, Body: map[string]any{"paused": true}}, 404, "NOT_FOUND", ""},
		{"unknown id patched", request{Method: http.MethodPatch, Path: "/v1/webhook-endpoints/" + unknown, Token: opsToken, Body: map[string]any{"paused": true}}, 404, "NOT_FOUND", ""},
		{"unknown id deleted", request{Method: http.MethodDelete, Path: "/v1/webhook-endpoints/" + unknown, Token: opsToken}, 404, "NOT_FOUND", ""},
		{"unknown id rotated", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints/" + unknown + "/rotate-secret", Token: opsToken}, 404, "NOT_FOUND", ""},
		{"unknown id replayed", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints/" + unknown + "/replay", Token: opsToken, Body: map[string]any{"after": ""}}, 404, "NOT_FOUND", ""},
		{"unknown id tested", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints/" + unknown + "/test", Token: opsToken}, 404, "NOT_FOUND", ""},
		{"malformed id's attempts", request{Method: http.MethodGet, Path: "/v1/webhook-endpoints/123/attempts", Token: opsToken}, 404, "NOT_FOUND", ""},
		{"oversize body", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints", Token: opsToken,
			Body: `{"url":"https://10.0.0.1/","description":"` + strings.Repeat("d", 70<<10) + `"}`}, 413, "PAYLOAD_TOO_LARGE", ""},
		{"oversize patch", request{Method: http.MethodPatch, Path: "/v1/webhook-endpoints/" + id, Token: opsToken,
			Body: `{"description":"` + strings.Repeat("d", 70<<10) + `"}`}, 413, "PAYLOAD_TOO_LARGE", ""},
		{"unknown field", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints", Token: opsToken, Body: map[string]any{"url": "https://10.0.0.1/", "secret": "whsec_mine"}}, 400, "PARAM_ERROR", "secret"},
		{"unknown field patched", request{Method: http.MethodPatch, Path: "/v1/webhook-endpoints/" + id, Token: opsToken, Body: map[string]any{"cursor": ""}}, 400, "PARAM_ERROR", "cursor"},
		{"paused not a boolean", request{Method: http.MethodPatch, Path: "/v1/webhook-endpoints/" + id, Token: opsToken, Body: map[string]any{"paused": "yes"}}, 400, "PARAM_ERROR", "paused"},
		{"empty body", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints", Token: opsToken, Body: ""}, 400, "PARAM_ERROR", "url"},
		{"malformed JSON", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints", Token: opsToken, Body: `{"url":`}, 400, "PARAM_ERROR", ""},
		{"repeated key", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints", Token: opsToken, Body: `{"url":"https://10.0.0.1/","url":"https://10.0.0.2/"}`}, 400, "PARAM_ERROR", ""},
		{"no content type", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints", Token: opsToken, Body: `{"url":"https://10.0.0.1/"}`, ContentType: noContentType}, 415, "UNSUPPORTED_MEDIA_TYPE", ""},
		{"replay with neither", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints/" + id + "/replay", Token: opsToken, Body: map[string]any{}}, 400, "PARAM_ERROR", "after"},
		{"replay with both", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints/" + id + "/replay", Token: opsToken, Body: map[string]any{"after": "", "from": "2026-01-01T00:00:00Z"}}, 400, "PARAM_ERROR", "from"},
		{"replay from a bad time", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints/" + id + "/replay", Token: opsToken, Body: map[string]any{"from": "yesterday"}}, 400, "PARAM_ERROR", "from"},
		{"replay after a bad cursor", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints/" + id + "/replay", Token: opsToken, Body: map[string]any{"after": "not-a-cursor"}}, 400, "PARAM_ERROR", "after"},
		{"replay from a number", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints/" + id + "/replay", Token: opsToken, Body: map[string]any{"from": 1}}, 400, "PARAM_ERROR", "from"},
		{"replay unknown field", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints/" + id + "/replay", Token: opsToken, Body: map[string]any{"to": ""}}, 400, "PARAM_ERROR", "to"},
		{"replay empty body", request{Method: http.MethodPost, Path: "/v1/webhook-endpoints/" + id + "/replay", Token: opsToken, Body: ""}, 400, "PARAM_ERROR", "after"},
		{"attempts limit 0", request{Method: http.MethodGet, Path: "/v1/webhook-endpoints/" + id + "/attempts?limit=0", Token: opsToken}, 400, "PARAM_ERROR", "limit"},
		{"attempts limit 501", request{Method: http.MethodGet, Path: "/v1/webhook-endpoints/" + id + "/attempts?limit=501", Token: opsToken}, 400, "PARAM_ERROR", "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			whExpectCode(t, call(t, s.URL, tc.rq), tc.status, tc.code, tc.field)
			if after := rows(); after != before {
				t.Fatalf("the endpoints table changed:\n%s\nwas\n%s", after, before)
			}
		})
	}
	if n := s.count(`SELECT count(*) FROM webhook_cursor_moves`); n != 0 {
		t.Fatalf("%d cursor moves after refused replays", n)
	}
	if n := s.count(`SELECT count(*) FROM webhook_endpoints`); n != 1 {
		t.Fatalf("%d endpoints, want the one created", n)
	}
	if logs.String() == "" {
		t.Fatal("no logs captured")
	}
	if secret := existing.Secret; secret == nil || strings.Contains(logs.String(), *secret) {
		t.Fatalf("the creation's secret %v is missing or logged", secret != nil)
	}
}

// Without CONTRACTD_WEBHOOK_KEY webhooks are off: creating an endpoint is
// 409 INVALID_STATE naming the variable, and nothing is written.
func TestWebhookEndpointsOffWithoutTheKey(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{Env: map[string]string{"CONTRACTD_WEBHOOK_ALLOW_LOOPBACK": "true"}})
	r := s.do(http.MethodPost, "/v1/webhook-endpoints", opsToken, map[string]any{"url": "https://10.0.0.1/hook"})
	e := whExpectCode(t, r, http.StatusConflict, "INVALID_STATE", "")
	if !strings.Contains(e.Message, "CONTRACTD_WEBHOOK_KEY") {
		t.Fatalf("message %q does not name CONTRACTD_WEBHOOK_KEY", e.Message)
	}
	if n := s.count(`SELECT count(*) FROM webhook_endpoints`); n != 0 {
		t.Fatalf("%d endpoints written with webhooks off", n)
	}
}
