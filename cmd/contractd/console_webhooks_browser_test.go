package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestConsoleWebhooksInABrowser drives the console's webhook endpoints
// pages in chromium against the real server, Postgres and a real receiver:
// create (the secret shown once, then never again), lag while paused and
// back to 0 once resumed, a failing receiver's last error, test delivery,
// replay and rotation, delete with a confirmation; every change recorded as
// the signed-in operator's.
func TestConsoleWebhooksInABrowser(t *testing.T) {
	s := whcStack(t)
	rc := newWhcReceiver(t)
	shots := os.Getenv(consoleEnv)
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	// A contract from before the endpoint, which a replay from a time
	// reaches back to.
	opsSigned(t, s, "whc-before")
	var start time.Time
	if err := s.DB.Pool.QueryRow(context.Background(), `SELECT min(recorded_at) FROM contract_events`).Scan(&start); err != nil {
		t.Fatal(err)
	}
	beforeIDs := whcEventIDs(t, s)

	ctx := browser(t)
	signIn(t, ctx, s.URL, aliceToken)
	step(t, ctx, "the webhooks page from the navigation",
		chromedp.Click(chromedp.CSS(`nav a[href="/ops/webhooks"]`)),
		chromedp.WaitVisible(chromedp.ID("create-webhook")))
	if p := value(t, ctx, "no endpoints", chromedp.Text(chromedp.ID("no-webhooks"))); !strings.Contains(p, "No webhook endpoints") {
		t.Fatalf("an empty list says %q", p)
	}

	// Create: the answer shows the secret once, with its warning.
	step(t, ctx, "create an endpoint",
		chromedp.SendKeys(chromedp.ID("wh-url"), rc.URL+"/hooks"),
		chromedp.SendKeys(chromedp.ID("wh-description"), "orders app"),
		chromedp.Click(chromedp.ID("create")),
		chromedp.WaitVisible(chromedp.ID("secret")))
	secret := value(t, ctx, "the secret", chromedp.Text(chromedp.ID("secret")))
	if !strings.HasPrefix(secret, "whsec_") || len(secret) < 40 {
		t.Fatalf("the creation shows secret %q", secret)
	}
	if warn := value(t, ctx, "the warning", chromedp.Text(chromedp.CSS(".secret"))); !strings.Contains(warn, "Copy it now: it is not shown again") {
		t.Fatalf("the secret is shown without its warning: %q", warn)
	}
	id := value(t, ctx, "the endpoint's id", chromedp.Text(chromedp.ID("endpoint-id")))
	screenshot(t, ctx, shots, "webhook-created-1440.png", 1440)
	if n := s.count(`SELECT count(*) FROM webhook_endpoints WHERE id = $1 AND created_by = 'alice' AND url = $2 AND description = 'orders app'`,
		id, rc.URL+"/hooks"); n != 1 {
		t.Fatalf("the endpoint %s is not stored as alice's with its url and description", id)
	}
	if n := s.count(`SELECT count(*) FROM webhook_endpoints WHERE position(convert_to($1, 'UTF8') in secret_sealed) > 0`, secret); n != 0 {
		t.Fatal("the secret is stored in clear")
	}
	// Never again: neither the list nor the endpoint's page holds it.
	html := func(what string) string {
		return value(t, ctx, what, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
	}
	step(t, ctx, "the list", chromedp.Navigate(s.URL+"/ops/webhooks"), chromedp.WaitVisible(chromedp.ID("webhooks")))
	if h := html("the list"); strings.Contains(h, secret) || strings.Contains(h, "whsec_") {
		t.Fatal("the list shows the secret")
	}
	endpointPage := s.URL + "/ops/webhooks/" + id
	openEndpoint := func() {
		t.Helper()
		step(t, ctx, "the endpoint's page", chromedp.Navigate(endpointPage), chromedp.WaitVisible(chromedp.ID("endpoint-id")))
	}
	openEndpoint()
	if h := html("the endpoint's page"); strings.Contains(h, secret) || strings.Contains(h, "whsec_") {
		t.Fatal("the endpoint's page shows the secret")
	}

	// row reads the endpoint's row of the list, reloaded.
	row := func() map[string]string {
		t.Helper()
		step(t, ctx, "the list", chromedp.Navigate(s.URL+"/ops/webhooks"), chromedp.WaitVisible(chromedp.ID("webhooks")))
		return value(t, ctx, "the endpoint's row", chromedp.Evaluate[map[string]string](`(() => {
			const tr = document.querySelector('#webhooks tr[data-id="`+id+`"]');
			const o = {};
			if (tr) tr.querySelectorAll("td[data-field]").forEach(td => o[td.dataset.field] = td.textContent.trim());
			return o;
		})()`))
	}
	lagEvents := func(r map[string]string) int {
		n, err := strconv.Atoi(r["lag_events"])
		if err != nil {
			t.Fatalf("lag_events %q: %v", r["lag_events"], err)
		}
		return n
	}

	// Pause, then make events: the list shows them as lag, and the
	// receiver gets none of them.
	step(t, ctx, "pause", chromedp.Click(chromedp.ID("pause")), chromedp.WaitVisible(chromedp.ID("resume")))
	if shown := value(t, ctx, "paused", chromedp.Text(chromedp.ID("endpoint-paused"))); shown != "yes" {
		t.Fatalf("after pausing, the page shows paused %q", shown)
	}
	if n := s.count(`SELECT count(*) FROM webhook_endpoints WHERE id = $1 AND paused`, id); n != 1 {
		t.Fatal("pause did not pause the endpoint")
	}
	opsSigned(t, s, "whc-while-paused-1")
	opsSigned(t, s, "whc-while-paused-2")
	whilePaused := whcEventIDs(t, s)[len(beforeIDs):]
	// The lag is every row the feed serves past the endpoint's cursor:
	// those made while paused, and the contract's from before the creation
	// when the feed's tail was still behind them then (a transaction
	// elsewhere in the cluster holds the feed's horizon back, and a new
	// endpoint's cursor never skips a row behind it).
	pastCursor := func() int {
		var cursor string
		if err := s.DB.Pool.QueryRow(context.Background(), `SELECT cursor FROM webhook_endpoints WHERE id = $1`, id).Scan(&cursor); err != nil {
			t.Fatal(err)
		}
		var feed struct {
			Items []json.RawMessage `json:"items"`
		}
		s.do(http.MethodGet, "/v1/events?limit=500&after="+url.QueryEscape(cursor), opsToken, nil).JSON(t, &feed)
		return len(feed.Items)
	}
	var shown map[string]string
	eventually(t, 60*time.Second, "the lag of the paused endpoint", func() bool {
		shown = row()
		return lagEvents(shown) >= len(whilePaused) && lagEvents(shown) == pastCursor() && shown["lag_seconds"] != "0.0 s"
	})
	if shown["paused"] != "paused" || !strings.HasSuffix(shown["lag_seconds"], " s") {
		t.Fatalf("the paused endpoint's row: %v", shown)
	}
	screenshot(t, ctx, shots, "webhooks-lag-1440.png", 1440)
	screenshot(t, ctx, shots, "webhooks-lag-375.png", 375)
	got, _ := rc.accepted()
	for _, e := range whilePaused {
		if got[e] != 0 {
			t.Fatalf("a paused endpoint was sent event %s", e)
		}
	}

	// Resume: the receiver gets every event since the creation, and the
	// lag falls to 0.
	openEndpoint()
	step(t, ctx, "resume", chromedp.Click(chromedp.ID("resume")), chromedp.WaitVisible(chromedp.ID("pause")))
	eventually(t, 60*time.Second, "the events made while paused, delivered", func() bool {
		got, _ := rc.accepted()
		for _, e := range whilePaused {
			if got[e] == 0 {
				return false
			}
		}
		return true
	})
	eventually(t, 60*time.Second, "the lag back to 0", func() bool {
		shown = row()
		return lagEvents(shown) == 0 && shown["paused"] == "active"
	})
	if shown["last_status"] != "200" || shown["last_error"] != "" {
		t.Fatalf("after delivering, the row shows %v", shown)
	}

	// The receiver fails: the last error and status show on the list and
	// on the endpoint's page; a test delivery shows its failed attempt.
	rc.setStatus(http.StatusInternalServerError)
	opsSigned(t, s, "whc-failing")
	eventually(t, 60*time.Second, "the failed attempt on the list", func() bool {
		shown = row()
		return shown["last_status"] == "500" && shown["last_error"] != "" && lagEvents(shown) > 0
	})
	openEndpoint()
	if e := value(t, ctx, "the last error", chromedp.Text(chromedp.ID("last-error"))); e == "" || e == "No error." {
		t.Fatalf("the endpoint's page shows last error %q", e)
	}
	screenshot(t, ctx, shots, "webhook-failing-1440.png", 1440)
	step(t, ctx, "test delivery to the failing receiver", chromedp.Click(chromedp.ID("test")), chromedp.WaitVisible(chromedp.ID("test-attempt")))
	if st, out := value(t, ctx, "test status", chromedp.Text(chromedp.ID("test-status"))),
		value(t, ctx, "test outcome", chromedp.Text(chromedp.ID("test-outcome"))); st != "500" || !strings.HasPrefix(out, "failed") {
		t.Fatalf("the failed test delivery shows status %q, outcome %q", st, out)
	}

	// It accepts again: the failed batch goes through, and a test
	// delivery shows its accepted attempt, which the receiver got.
	rc.setStatus(http.StatusOK)
	eventually(t, 60*time.Second, "the failed batch delivered after all", func() bool {
		shown = row()
		return lagEvents(shown) == 0 && shown["last_status"] == "200"
	})
	_, pingsBefore := rc.accepted()
	openEndpoint()
	step(t, ctx, "test delivery", chromedp.Click(chromedp.ID("test")), chromedp.WaitVisible(chromedp.ID("test-attempt")))
	if st, out := value(t, ctx, "test status", chromedp.Text(chromedp.ID("test-status"))),
		value(t, ctx, "test outcome", chromedp.Text(chromedp.ID("test-outcome"))); st != "200" || out != "accepted" {
		t.Fatalf("the test delivery shows status %q, outcome %q", st, out)
	}
	if _, pings := rc.accepted(); pings != pingsBefore+1 {
		t.Fatalf("the receiver got %d pings for one test delivery", pings-pingsBefore)
	}
	// The attempts are listed newest first: the test's ping on top.
	kinds := value(t, ctx, "attempts", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#attempts tbody tr")).map(tr => tr.dataset.kind + ":" + tr.dataset.status)`))
	if len(kinds) < 4 || kinds[0] != "ping:200" || !strings.Contains(strings.Join(kinds, ","), "events:500") {
		t.Fatalf("attempts listed %v, want the test's ping first and the failed batch among them", kinds)
	}

	// Replay from a time before the first contract (a datetime-local, in
	// UTC): the receiver gets every row of the feed once more, those of the
	// contract from before the endpoint's creation too; the move is
	// alice's.
	delivered, _ := rc.accepted()
	openEndpoint()
	if label := value(t, ctx, "the time's label", chromedp.Text(chromedp.CSS(`label[for="replay-from-utc"]`))); !strings.Contains(label, "UTC") {
		t.Fatalf("the replay's time field does not say UTC: %q", label)
	}
	step(t, ctx, "replay",
		chromedp.SetValue(chromedp.ID("replay-from-utc"), start.UTC().Add(-time.Second).Format("2006-01-02T15:04:05")),
		chromedp.Click(chromedp.ID("replay")),
		chromedp.WaitVisible(chromedp.CSS("p.done")))
	if done := value(t, ctx, "replayed", chromedp.Text(chromedp.CSS("p.done"))); !strings.Contains(done, "cursor moved") {
		t.Fatalf("after the replay the page says %q", done)
	}
	if n := s.count(`SELECT count(*) FROM webhook_cursor_moves WHERE endpoint_id = $1 AND actor = 'alice'`, id); n != 1 {
		t.Fatalf("%d cursor moves recorded as alice's, want 1", n)
	}
	all := whcEventIDs(t, s)
	eventually(t, 60*time.Second, "every row of the feed delivered again", func() bool {
		got, _ := rc.accepted()
		for _, e := range all {
			if got[e] < delivered[e]+1 {
				return false
			}
		}
		return true
	})
	eventually(t, 60*time.Second, "the lag back to 0 after the replay", func() bool { return lagEvents(row()) == 0 })

	// Rotate: the new secret shows once, and neither is shown after.
	openEndpoint()
	step(t, ctx, "rotate", chromedp.Click(chromedp.ID("rotate")), chromedp.WaitVisible(chromedp.ID("secret")))
	rotated := value(t, ctx, "the new secret", chromedp.Text(chromedp.ID("secret")))
	if !strings.HasPrefix(rotated, "whsec_") || rotated == secret {
		t.Fatalf("the rotation shows secret %q", rotated)
	}
	openEndpoint()
	if h := html("the endpoint's page after rotation"); strings.Contains(h, rotated) || strings.Contains(h, secret) {
		t.Fatal("the endpoint's page shows a secret after the rotation")
	}

	// Delete asks first, then forgets the endpoint.
	step(t, ctx, "ask to delete", chromedp.Click(chromedp.ID("delete")), chromedp.WaitVisible(chromedp.ID("confirm-delete")))
	if n := s.count(`SELECT count(*) FROM webhook_endpoints`); n != 1 {
		t.Fatal("the endpoint was deleted before the confirmation")
	}
	screenshot(t, ctx, shots, "webhook-delete-confirm-1440.png", 1440)
	step(t, ctx, "confirm", chromedp.Click(chromedp.ID("confirm-delete")), chromedp.WaitVisible(chromedp.ID("no-webhooks")))
	if n := s.count(`SELECT count(*) FROM webhook_endpoints`); n != 0 {
		t.Fatalf("%d endpoints after the deletion", n)
	}
	if done := value(t, ctx, "deleted", chromedp.Text(chromedp.CSS("p.done"))); !strings.Contains(done, "deleted") {
		t.Fatalf("after the deletion the page says %q", done)
	}
	step(t, ctx, "the deleted endpoint's page", chromedp.Navigate(endpointPage), chromedp.WaitVisible(chromedp.CSS("p.problem")))
	if title := value(t, ctx, "title", chromedp.Title()); !strings.HasPrefix(title, "Error") {
		t.Fatalf("a deleted endpoint's page is %q", title)
	}
}
