package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Tokens of the console's browser test: alice is a named ops holder.
const (
	aliceToken = "alice-ops-token"
	consoleEnv = "CONTRACTD_SCREENSHOTS"
)

// browser starts Debian's chromium, headless and without its sandbox (the
// tests run as root), at 1440x1000, for as long as the test runs.
// scripts/test (scripts/chromium) installs chromium where it is missing.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed: run bash scripts/chromium (scripts/test does): %v", err)
	}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]), chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1440, 1000), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// step runs browser actions with a generous deadline, failing the test
// with what was being done.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// signIn signs the browser in to the console at base with an ops token
// and waits for the overview.
func signIn(t *testing.T, ctx context.Context, base, token string) {
	t.Helper()
	step(t, ctx, "sign in",
		chromedp.Navigate(base+"/ops/signin"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(chromedp.ID("count-signed")))
}

// value runs one browser action that returns a value.
func value[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// screenshot saves a full-page PNG of the current page at width into the
// screenshot directory.
func screenshot(t *testing.T, ctx context.Context, dir, name string, width int64) {
	t.Helper()
	step(t, ctx, "resize to "+name, chromedp.EmulateViewport(width, 900))
	png := value(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	step(t, ctx, "resize back", chromedp.EmulateViewport(1440, 1000))
}

// TestConsoleInABrowser drives the operations console in chromium against
// the real server, simulator and Postgres.
func TestConsoleInABrowser(t *testing.T) {
	s := startStack(t, stackOptions{Env: map[string]string{
		"CONTRACTD_API_TOKENS": "app:" + appToken + ",ops:" + opsToken + ",ops:alice:" + aliceToken,
	}})
	shots := os.Getenv(consoleEnv)
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	// Contracts in several states: four signed, two with open sessions.
	signed := map[string]string{} // code -> contract_id
	for i := range 4 {
		code := fmt.Sprintf("console-signed-%d", i)
		signed[code] = opsSigned(t, s, code).ContractID
	}
	for i := range 2 {
		ntPreSign(t, s, fmt.Sprintf("console-open-%d", i))
	}
	target := "console-signed-2"

	ctx := browser(t)

	// An app token cannot sign in, and leaves no session behind.
	step(t, ctx, "sign in with an app token",
		chromedp.Navigate(s.URL+"/ops/signin"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), appToken),
		chromedp.Submit(chromedp.ID("token")),
		chromedp.WaitVisible(chromedp.CSS("p.problem")))
	if msg := value(t, ctx, "app token refusal", chromedp.Text(chromedp.CSS("p.problem"))); !strings.Contains(msg, "an ops token is needed") {
		t.Fatalf("app token sign-in answered %q", msg)
	}
	if n := s.count(`SELECT count(*) FROM console_sessions`); n != 0 {
		t.Fatalf("an app token started %d sessions", n)
	}

	// alice signs in and sees the overview; its counts are the database's.
	signIn(t, ctx, s.URL, aliceToken)
	if title := value(t, ctx, "title", chromedp.Title()); !strings.HasPrefix(title, "Overview") {
		t.Fatalf("after sign-in the title is %q", title)
	}
	for _, st := range []string{"created", "session_issued", "signed", "expired", "terminated"} {
		shown := value(t, ctx, "count of "+st, chromedp.Text(chromedp.ID("count-"+st)))
		if want := s.count(`SELECT count(*) FROM contracts WHERE state = $1`, st); shown != fmt.Sprint(want) {
			t.Fatalf("overview shows %s %s, the database has %d", st, shown, want)
		}
	}
	checks := map[string]string{
		"funnel-presigns": `SELECT count(*) FROM contracts WHERE created_at > now() - interval '24 hours'`,
		"funnel-sessions": `SELECT count(*) FROM contract_events WHERE event = 'issue_session' AND occurred_at > now() - interval '24 hours'`,
		"funnel-signed":   `SELECT count(*) FROM contract_events WHERE event = 'sign' AND NOT ignored AND occurred_at > now() - interval '24 hours'`,
	}
	for id, sql := range checks {
		if shown, want := value(t, ctx, id, chromedp.Text(chromedp.ID(id))), s.count(sql); shown != fmt.Sprint(want) {
			t.Fatalf("overview shows %s %s, the database has %d", id, shown, want)
		}
	}
	screenshot(t, ctx, shots, "overview-1440.png", 1440)
	screenshot(t, ctx, shots, "overview-375.png", 375)

	// Filter signed: exactly the signed contracts are listed.
	step(t, ctx, "filter signed",
		chromedp.Navigate(s.URL+"/ops/contracts"),
		chromedp.WaitVisible(chromedp.ID("f-state")),
		chromedp.SetValue(chromedp.ID("f-state"), "signed"),
		chromedp.Click(chromedp.ID("apply-filters")))
	// The list page has a table before and after: wait for the filtered one.
	eventually(t, 60*time.Second, "the filtered list", func() bool {
		return strings.Contains(value(t, ctx, "location", chromedp.Location()), "state=signed")
	})
	step(t, ctx, "filtered list", chromedp.WaitVisible(chromedp.CSS(`#contracts`)))
	listed := value(t, ctx, "listed states", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#contracts tbody tr")).map(tr => tr.cells[0].innerText + "=" + tr.cells[2].innerText)`))
	if len(listed) != len(signed) {
		t.Fatalf("filter signed lists %v, want the %d signed contracts", listed, len(signed))
	}
	for _, row := range listed {
		code, state, _ := strings.Cut(row, "=")
		if _, ok := signed[code]; !ok || state != "signed" {
			t.Fatalf("filter signed lists %v", listed)
		}
	}
	screenshot(t, ctx, shots, "contracts-1440.png", 1440)
	screenshot(t, ctx, shots, "contracts-375.png", 375)

	// Find the target by its contract_id in the search box, and open it.
	step(t, ctx, "search by contract_id",
		chromedp.SendKeys(chromedp.ID("q"), signed[target]),
		chromedp.Submit(chromedp.ID("q")),
		chromedp.WaitVisible(chromedp.ID("timeline")))
	if h1 := value(t, ctx, "heading", chromedp.Text(chromedp.CSS("h1"))); !strings.Contains(h1, target) {
		t.Fatalf("search for %s opened %q", signed[target], h1)
	}
	if shown := value(t, ctx, "contract_id", chromedp.Text(chromedp.ID("contract-id"))); shown != signed[target] {
		t.Fatalf("contract page shows contract_id %q, want %q", shown, signed[target])
	}
	// Its timeline shows every history row, in the database's order.
	timeline := value(t, ctx, "timeline", chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#timeline tbody tr")).map(tr => tr.dataset.event + "#" + tr.cells[0].innerText)`))
	var want []string
	rows, err := s.DB.Pool.Query(context.Background(), `SELECT event, id FROM contract_events WHERE out_contract_code = $1 ORDER BY id`, target)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var ev string
		var id int64
		if err := rows.Scan(&ev, &id); err != nil {
			t.Fatal(err)
		}
		want = append(want, fmt.Sprintf("%s#%d", ev, id))
	}
	if !slices.Equal(timeline, want) || len(want) != 2 || !strings.HasPrefix(want[0], "issue_session#") || !strings.HasPrefix(want[1], "sign#") {
		t.Fatalf("timeline %v, database %v (want issue_session then sign)", timeline, want)
	}
	// The openid is masked until revealed.
	if shown := value(t, ctx, "openid", chromedp.Text(chromedp.ID("openid"))); !strings.Contains(shown, "•") {
		t.Fatalf("openid shown unmasked before reveal: %q", shown)
	}
	screenshot(t, ctx, shots, "contract-1440.png", 1440)
	screenshot(t, ctx, shots, "contract-375.png", 375)

	// A form posted without its CSRF token is refused with 403 and changes
	// nothing: the session's cookie goes along, the token does not.
	eventsBefore := s.count(`SELECT count(*) FROM contract_events`)
	for _, form := range []string{
		`{code: "console-signed-1", note: "no csrf", confirm: "yes"}`,
		`{code: "console-signed-1", note: "wrong csrf", confirm: "yes", csrf: "0000"}`,
	} {
		status := value(t, ctx, "post without CSRF", chromedp.Evaluate[int](
			`fetch("/ops/contract/terminate", {method: "POST", body: new URLSearchParams(`+form+`)}).then(r => r.status)`, chromedp.EvalAwaitPromise))
		if status != 403 {
			t.Fatalf("terminate without a CSRF token answered %d, want 403", status)
		}
	}
	status := value(t, ctx, "sign-out without CSRF", chromedp.Evaluate[int](
		`fetch("/ops/signout", {method: "POST", body: new URLSearchParams({})}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if status != 403 {
		t.Fatalf("sign-out without a CSRF token answered %d, want 403", status)
	}
	if ntState(t, s, "console-signed-1") != "signed" || s.count(`SELECT count(*) FROM contract_events`) != eventsBefore ||
		s.count(`SELECT count(*) FROM console_sessions`) != 1 {
		t.Fatal("a form without its CSRF token changed something")
	}

	// Terminate: a note, then a confirmation step (nothing happens before
	// it), then the contract is terminated, recorded as alice's.
	step(t, ctx, "ask to terminate",
		chromedp.SendKeys(chromedp.ID("note"), "customer asked by phone"),
		chromedp.Click(chromedp.ID("terminate")),
		chromedp.WaitVisible(chromedp.ID("confirm-terminate")))
	if ntState(t, s, target) != "signed" {
		t.Fatal("the contract was terminated before the confirmation")
	}
	screenshot(t, ctx, shots, "terminate-confirm-1440.png", 1440)
	step(t, ctx, "confirm",
		chromedp.Click(chromedp.ID("confirm-terminate")),
		chromedp.WaitVisible(chromedp.CSS("p.done")))
	if shown := value(t, ctx, "state", chromedp.Text(chromedp.ID("state"))); shown != "terminated" {
		t.Fatalf("after terminating, the page shows %q", shown)
	}
	if st := ntState(t, s, target); st != "terminated" {
		t.Fatalf("after terminating, the database has %s", st)
	}
	var details []byte
	if err := s.DB.Pool.QueryRow(context.Background(), `SELECT details FROM contract_events
		WHERE out_contract_code = $1 AND event = 'terminate'`, target).Scan(&details); err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(details, &d); err != nil || d["actor"] != "alice" || d["note"] != "customer asked by phone" {
		t.Fatalf("terminate history details %s, want actor alice and the note", details)
	}
	rowsShown := value(t, ctx, "timeline rows", chromedp.Evaluate[int](`document.querySelectorAll("#timeline tbody tr").length`))
	if rowsShown != 3 {
		t.Fatalf("after terminating the timeline shows %d rows, want 3", rowsShown)
	}

	// The live feed shows the termination.
	step(t, ctx, "live feed",
		chromedp.Navigate(s.URL+"/ops/feed"),
		chromedp.WaitVisible(chromedp.ID("feed")))
	if first := value(t, ctx, "feed's newest row", chromedp.Text(chromedp.CSS("#feed tbody tr"))); !strings.Contains(first, "terminate") {
		t.Fatalf("the feed's newest row is %q", first)
	}
	// Its script runs under the page's CSP and picks up new rows: sign
	// another contract and wait for its row to appear without a reload.
	eventually(t, 60*time.Second, "the feed's script polling", func() bool {
		return strings.HasPrefix(value(t, ctx, "feed status", chromedp.Text(chromedp.ID("feed-status"))), "live")
	})
	ntPreSign(t, s, "console-feed-new")
	eventually(t, 60*time.Second, "the new row in the live feed", func() bool {
		return strings.Contains(value(t, ctx, "feed's newest row", chromedp.Text(chromedp.CSS("#feed tbody tr"))), "console-feed-new")
	})
	screenshot(t, ctx, shots, "feed-1440.png", 1440)

	// Signing out ends the session in the database; the console then leads
	// back to sign-in.
	step(t, ctx, "sign out",
		chromedp.Click(chromedp.CSS(".signout button")),
		chromedp.WaitVisible(chromedp.ID("token")))
	if n := s.count(`SELECT count(*) FROM console_sessions`); n != 0 {
		t.Fatalf("%d sessions left after sign-out", n)
	}
	step(t, ctx, "overview after sign-out",
		chromedp.Navigate(s.URL+"/ops/"),
		chromedp.WaitVisible(chromedp.ID("token")))
}
