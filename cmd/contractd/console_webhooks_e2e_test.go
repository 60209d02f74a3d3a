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
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Helpers of the console's webhook tests (prefix whc).

// whcBatch is one delivery a receiver got, and the status it answered.
type whcBatch struct {
	Type       string `json:"type"`
	DeliveryID string `json:"delivery_id"`
	Events     []struct {
		EventID string `json:"event_id"`
	} `json:"events"`
	Answered int `json:"-"`
}

// whcReceiver is an app server's webhook receiver (a real HTTP server): it
// keeps every delivery and answers the status it is set to (200 first).
type whcReceiver struct {
	URL    string
	status atomic.Int32
	mu     sync.Mutex
	got    []whcBatch
}

func newWhcReceiver(t *testing.T) *whcReceiver {
	t.Helper()
	rc := &whcReceiver{}
	rc.status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var b whcBatch
		if err := json.Unmarshal(body, &b); err != nil {
			http.Error(w, "not a batch", http.StatusBadRequest)
			return
		}
		b.Answered = int(rc.status.Load())
		rc.mu.Lock()
		rc.got = append(rc.got, b)
		rc.mu.Unlock()
		w.WriteHeader(b.Answered)
		_, _ = fmt.Fprintf(w, `{"answered":%d}`, b.Answered)
	}))
	t.Cleanup(srv.Close)
	rc.URL = srv.URL
	return rc
}

// setStatus makes the receiver answer status from now on.
func (rc *whcReceiver) setStatus(status int) { rc.status.Store(int32(status)) }

// accepted counts, per event_id, the batches the receiver accepted (2xx)
// that carried it; pings counts the ping batches it got.
func (rc *whcReceiver) accepted() (events map[string]int, pings int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	events = map[string]int{}
	for _, b := range rc.got {
		if b.Type == "ping" {
			pings++
		}
		if b.Answered/100 != 2 {
			continue
		}
		for _, e := range b.Events {
			events[e.EventID]++
		}
	}
	return events, pings
}

// received is how many deliveries the receiver got, accepted or not.
func (rc *whcReceiver) received() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

// whcStack starts a stack whose contractd has webhooks on (a key), may
// target loopback receivers, and knows alice's ops token.
func whcStack(t *testing.T) *stack {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return startStack(t, stackOptions{Env: map[string]string{
		"CONTRACTD_API_TOKENS":             "app:" + appToken + ",ops:" + opsToken + ",ops:alice:" + aliceToken,
		"CONTRACTD_WEBHOOK_KEY":            base64.StdEncoding.EncodeToString(key),
		"CONTRACTD_WEBHOOK_ALLOW_LOOPBACK": "true",
	}})
}

// whcEventIDs is every event_id of the stack's feed.
func whcEventIDs(t *testing.T, s *stack) []string {
	t.Helper()
	rows, err := s.DB.Pool.Query(context.Background(), `SELECT event_id::text FROM contract_events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// whcEndpointState is everything the webhook tables hold, as text: an
// action that changed anything changes it.
func whcEndpointState(t *testing.T, s *stack) string {
	t.Helper()
	var st string
	if err := s.DB.Pool.QueryRow(context.Background(), `SELECT
		coalesce((SELECT json_agg(json_build_array(id, url, description, paused, cursor, encode(secret_sealed, 'hex'),
			encode(previous_secret_sealed, 'hex'), updated_at, delivery_id, delivery_through) ORDER BY id) FROM webhook_endpoints), '[]')::text
		|| ' attempts=' || (SELECT count(*) FROM webhook_attempts)
		|| ' moves=' || (SELECT count(*) FROM webhook_cursor_moves)`).Scan(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// hostile is a text that would inject a script if a page did not escape it.
const hostile = `"><script>alert(1)</script>`

// TestConsoleWebhookFormsNeedCSRFAndEscapeText: every POST of the webhook
// pages without the session's CSRF token (or with a wrong one) is 403 and
// changes nothing, and hostile text in an endpoint's description and url,
// or in a refusal, reaches chromium's DOM as text, never as an element.
func TestConsoleWebhookFormsNeedCSRFAndEscapeText(t *testing.T) {
	t.Parallel()
	s := whcStack(t)
	rc := newWhcReceiver(t)
	c := newConsoleClient(t, s.URL)
	if r := c.signIn(aliceToken); r.Status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", r.Status)
	}
	list := c.do(http.MethodGet, "/ops/webhooks", nil)
	if list.Status != http.StatusOK || !strings.Contains(list.Body, `href="/ops/webhooks" aria-current="page"`) {
		t.Fatalf("the webhooks page: %d, or no navigation link to it", list.Status)
	}
	token := csrf(t, list)
	created := c.do(http.MethodPost, "/ops/webhooks", url.Values{"csrf": {token}, "url": {rc.URL + "/hooks"}, "description": {"orders"}})
	if created.Status != http.StatusCreated || !strings.Contains(created.Body, "whsec_") {
		t.Fatalf("create: %d %.400s", created.Status, created.Body)
	}
	var id string
	if err := s.DB.Pool.QueryRow(context.Background(), `SELECT id::text FROM webhook_endpoints`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	base := "/ops/webhooks/" + id
	setPaused := func(t *testing.T, paused bool) {
		t.Helper()
		action := "/resume"
		if paused {
			action = "/pause"
		}
		if r := c.do(http.MethodPost, base+action, url.Values{"csrf": {token}}); r.Status != http.StatusSeeOther {
			t.Fatalf("%s with its CSRF token: %d", action, r.Status)
		}
	}

	cases := []struct {
		name   string
		path   string
		form   url.Values
		paused bool // the endpoint's state before the POST
	}{
		{"create", "/ops/webhooks", url.Values{"url": {rc.URL + "/other"}, "description": {"no csrf"}}, false},
		{"pause", base + "/pause", url.Values{}, false},
		{"resume", base + "/resume", url.Values{}, true},
		{"test", base + "/test", url.Values{}, false},
		{"replay", base + "/replay", url.Values{"beginning": {"yes"}}, false},
		{"rotate", base + "/rotate", url.Values{}, false},
		{"delete (asking)", base + "/delete", url.Values{}, false},
		{"delete (confirmed)", base + "/delete", url.Values{"confirm": {"yes"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			setPaused(t, tc.paused)
			before, received := whcEndpointState(t, s), rc.received()
			for _, csrfValue := range []string{"", "0000", strings.Repeat("0", len(token))} {
				form := url.Values{}
				for k, v := range tc.form {
					form[k] = v
				}
				if csrfValue != "" {
					form.Set("csrf", csrfValue)
				}
				r := c.do(http.MethodPost, tc.path, form)
				if r.Status != http.StatusForbidden || !strings.Contains(r.Body, "CSRF token is missing or wrong") {
					t.Fatalf("POST %s with csrf %q: %d, want 403", tc.path, csrfValue, r.Status)
				}
				if after := whcEndpointState(t, s); after != before {
					t.Fatalf("POST %s with csrf %q changed the webhook tables:\n%s\n->\n%s", tc.path, csrfValue, before, after)
				}
			}
			if rc.received() != received {
				t.Fatalf("POST %s without its CSRF token made a delivery", tc.path)
			}
		})
	}

	// Replay to a feed cursor through the form (forward, past the first of
	// two events made while the endpoint is paused, so that the cursor is
	// not there already): the move is recorded to that cursor, as alice's;
	// a cursor this service did not issue is refused on the endpoint's page.
	setPaused(t, true)
	ntPreSign(t, s, "whc-csrf-1")
	ntPreSign(t, s, "whc-csrf-2")
	var feed struct {
		NextCursor string `json:"next_cursor"`
	}
	// The feed serves the first row once the cluster's horizon passes it.
	eventually(t, 60*time.Second, "the feed's first row", func() bool {
		s.do(http.MethodGet, "/v1/events?limit=1", opsToken, nil).JSON(t, &feed)
		return feed.NextCursor != ""
	})
	if r := c.do(http.MethodPost, base+"/replay", url.Values{"csrf": {token}, "after": {feed.NextCursor}}); r.Status != http.StatusSeeOther {
		t.Fatalf("replay to a cursor: %d %.400s", r.Status, r.Body)
	}
	if n := s.count(`SELECT count(*) FROM webhook_cursor_moves WHERE endpoint_id = $1 AND to_cursor = $2 AND actor = 'alice'`, id, feed.NextCursor); n != 1 || feed.NextCursor == "" {
		t.Fatalf("%d moves to cursor %q recorded as alice's, want 1", n, feed.NextCursor)
	}
	moves := s.count(`SELECT count(*) FROM webhook_cursor_moves`)
	bad := c.do(http.MethodPost, base+"/replay", url.Values{"csrf": {token}, "after": {"not-a-cursor"}})
	if bad.Status != http.StatusBadRequest || !strings.Contains(bad.Body, "Replay failed") || !strings.Contains(bad.Body, `value="not-a-cursor"`) ||
		s.count(`SELECT count(*) FROM webhook_cursor_moves`) != moves {
		t.Fatalf("replay to a bad cursor: %d %.600s", bad.Status, bad.Body)
	}
	setPaused(t, false)

	// Hostile text: an endpoint whose description and url hold markup,
	// created with the token; and a refused url, shown in the problem.
	hostileURL := rc.URL + "/" + hostile
	if r := c.do(http.MethodPost, "/ops/webhooks", url.Values{"csrf": {token}, "url": {hostileURL}, "description": {hostile}}); r.Status != http.StatusCreated {
		t.Fatalf("create with hostile text: %d %.400s", r.Status, r.Body)
	}
	var hostileID string
	if err := s.DB.Pool.QueryRow(context.Background(), `SELECT id::text FROM webhook_endpoints WHERE description = $1`, hostile).Scan(&hostileID); err != nil {
		t.Fatal(err)
	}
	refused := c.do(http.MethodPost, "/ops/webhooks", url.Values{"csrf": {token}, "url": {"ftp://" + hostile}, "description": {hostile}})
	if refused.Status != http.StatusBadRequest || strings.Contains(refused.Body, "<script>") || !strings.Contains(refused.Body, "&lt;script&gt;") {
		t.Fatalf("a refused hostile url: %d %.600s", refused.Status, refused.Body)
	}

	ctx := browser(t)
	signIn(t, ctx, s.URL, aliceToken)
	// noScripts checks the parsed page: no script element, no element with
	// an event handler attribute, and the hostile text there as text (text
	// is a script that reads it).
	noScripts := func(what, text string) {
		t.Helper()
		type dom struct {
			Scripts  int    `json:"scripts"`
			Handlers int    `json:"handlers"`
			Text     string `json:"text"`
		}
		got := value(t, ctx, what, chromedp.Evaluate[dom](`(() => ({
			scripts: document.querySelectorAll("script").length,
			handlers: Array.from(document.querySelectorAll("*")).filter(el => Array.from(el.attributes).some(a => a.name.startsWith("on"))).length,
			text: `+text+`}))()`))
		if got.Scripts != 0 || got.Handlers != 0 || !strings.Contains(got.Text, hostile) {
			t.Fatalf("%s: %d script elements, %d event handlers, text %q (want the hostile text as text)", what, got.Scripts, got.Handlers, got.Text)
		}
	}
	step(t, ctx, "the list", chromedp.Navigate(s.URL+"/ops/webhooks"), chromedp.WaitVisible(chromedp.ID("webhooks")))
	noScripts("the list's description and url", `document.querySelector('#webhooks tr[data-id="`+hostileID+`"]').textContent`)
	step(t, ctx, "the endpoint page", chromedp.Navigate(s.URL+"/ops/webhooks/"+hostileID), chromedp.WaitVisible(chromedp.ID("endpoint-id")))
	noScripts("the endpoint's description", `document.getElementById("endpoint-description").textContent`)
	noScripts("the endpoint's url", `document.getElementById("endpoint-url").textContent`)
	// The refusal of a hostile url, posted from the page's own form
	// (form.submit() skips the browser's own check of the url field).
	step(t, ctx, "a refused hostile url",
		chromedp.Navigate(s.URL+"/ops/webhooks"),
		chromedp.WaitVisible(chromedp.ID("create-webhook")),
		chromedp.Evaluate[chromedp.Void](`document.getElementById("wh-url").value = "ftp://`+strings.ReplaceAll(hostile, `"`, `\"`)+`";
			document.getElementById("wh-description").value = "refused";
			document.getElementById("create-webhook").submit();`),
		chromedp.WaitVisible(chromedp.CSS("p.problem")))
	noScripts("the refusal's url field", `document.getElementById("wh-url").value`)
	if v := value(t, ctx, "the url field kept", chromedp.Evaluate[string](`document.getElementById("wh-url").value`)); v != "ftp://"+hostile {
		t.Fatalf("the refused form's url field holds %q", v)
	}
}

// TestConsoleWebhookRefusalsAreShownOnThePage: what the delivery service
// refuses is said on the list page, with the API's status, and creates
// nothing: a loopback receiver where loopback is not allowed (PARAM_ERROR),
// and any endpoint while webhooks are off (no key: INVALID_STATE naming
// the variable).
func TestConsoleWebhookRefusalsAreShownOnThePage(t *testing.T) {
	t.Parallel()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	cases := []struct {
		name   string
		env    map[string]string
		status int
		says   string
	}{
		{"a loopback receiver without the setting", map[string]string{"CONTRACTD_WEBHOOK_KEY": base64.StdEncoding.EncodeToString(key)},
			http.StatusBadRequest, "resolves to a loopback address"},
		{"webhooks off", map[string]string{"CONTRACTD_WEBHOOK_ALLOW_LOOPBACK": "true"},
			http.StatusConflict, "CONTRACTD_WEBHOOK_KEY"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.env["CONTRACTD_API_TOKENS"] = "app:" + appToken + ",ops:" + opsToken + ",ops:alice:" + aliceToken
			s := startStack(t, stackOptions{Env: tc.env})
			rc := newWhcReceiver(t)
			c := newConsoleClient(t, s.URL)
			if r := c.signIn(aliceToken); r.Status != http.StatusSeeOther {
				t.Fatalf("sign-in: %d", r.Status)
			}
			list := c.do(http.MethodGet, "/ops/webhooks", nil)
			r := c.do(http.MethodPost, "/ops/webhooks", url.Values{"csrf": {csrf(t, list)}, "url": {rc.URL + "/hooks"}, "description": {"refused"}})
			if r.Status != tc.status || !strings.Contains(r.Body, `<p class="problem" role="alert">Creating the endpoint failed: `) ||
				!strings.Contains(r.Body, tc.says) || strings.Contains(r.Body, "whsec_") {
				t.Fatalf("create: %d, want %d saying %q; %.800s", r.Status, tc.status, tc.says, r.Body)
			}
			if !strings.Contains(r.Body, `value="`+rc.URL+`/hooks"`) {
				t.Fatal("the refused form does not keep its url")
			}
			if n := s.count(`SELECT count(*) FROM webhook_endpoints`); n != 0 {
				t.Fatalf("a refused create left %d endpoints", n)
			}
		})
	}
}
