package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/delivery"
	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/store"
)

// contractd dev registers its receiver as a webhook endpoint before the
// demo contract and names it in the banner; signing and then terminating
// the demo makes the receiver print each of the contract's history entries
// (the same event_ids the database holds, with their contract_version);
// when dev stops, its endpoint is gone.
func TestDevTellsItsReceiver(t *testing.T) {
	t.Parallel()
	db := pgtest.NewUnmigrated(t)
	env := map[string]string{
		"DATABASE_URL":        db.URL,
		"CONTRACTD_HTTP_ADDR": cliFreeAddr(t),
		"SIM_ADDR":            cliFreeAddr(t),
		"CONTRACTD_LOG_LEVEL": "error",
	}
	dev := startDev(t, env)
	stdout, stderr, ctx := dev.stdout, dev.stderr, t.Context()
	banner := stdout.String()
	find := func(re string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(banner)
		if m == nil {
			t.Fatalf("the banner lacks %s:\n%s\nstderr: %s", re, banner, stderr)
		}
		return m[1]
	}
	api, sim := find(`API:        (\S+)`), find(`Simulator:  (\S+)`)
	hook, code := find(`Webhooks:   (http://127\.0\.0\.1:\d+/)`), find(`A demo contract "(demo-\d+)"`)

	var id, url, desc string
	if err := db.Pool.QueryRow(ctx, `SELECT id::text, url, description FROM webhook_endpoints`).Scan(&id, &url, &desc); err != nil {
		t.Fatalf("the receiver's endpoint: %v", err)
	}
	if url != hook || desc != devReceiverDescription {
		t.Fatalf("endpoint %s: url %q, description %q; want %q, %q", id, url, desc, hook, devReceiverDescription)
	}

	post := func(url, token, body string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewBufferString(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d", url, resp.StatusCode)
		}
	}
	post(sim+"/sim/sign", "", `{"out_contract_code":"`+code+`"}`)
	told := func(event, from, to string) {
		t.Helper()
		re := regexp.MustCompile(fmt.Sprintf(`(?m)^receiver: %s %s %s→%s event_id=[0-9a-f-]{36} contract_version=\d+$`,
			event, regexp.QuoteMeta(code), regexp.QuoteMeta(from), to))
		eventually(t, time.Minute, "the receiver to print the "+event, func() bool { return re.MatchString(stdout.String()) })
	}
	told("issue_session", "created", "session_issued")
	told("sign", "session_issued", "signed")
	post(api+"/v1/contracts/"+code+"/terminate", devOpsToken, `{"note":"the test ends it"}`)
	told("terminate", "signed", "terminated")

	// What it printed is the contract's history: the same event_ids with
	// the same contract_versions, each once.
	rows, err := db.Pool.Query(ctx, `SELECT event_id::text || ' ' || contract_version FROM contract_events WHERE out_contract_code = $1 ORDER BY id`, code)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			t.Fatal(err)
		}
		want = append(want, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var printed []string
	for _, m := range regexp.MustCompile(`(?m)^receiver: \S+ `+regexp.QuoteMeta(code)+` .* event_id=(\S+) contract_version=(\d+)$`).FindAllStringSubmatch(stdout.String(), -1) {
		printed = append(printed, m[1]+" "+m[2])
	}
	if len(want) != 3 || !slices.Equal(printed, want) {
		t.Fatalf("the receiver printed (event_id contract_version) %v; the contract's history holds %v\nstdout:\n%s", printed, want, stdout)
	}
	if strings.Contains(stdout.String(), "receiver: refused") {
		t.Errorf("the receiver refused a delivery:\n%s", stdout)
	}

	dev.stop(t)
	var left int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_endpoints`).Scan(&left); err != nil || left != 0 {
		t.Fatalf("endpoints after contractd dev stopped: %d (%v), want 0", left, err)
	}
}

// Registering the receiver removes the endpoints of earlier dev runs (a
// dev killed before it could remove its own), and nothing else: an
// operator's endpoint on loopback stays.
func TestDevReceiverRegistrationReplacesEarlierRuns(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := t.Context()
	key := bytes.Repeat([]byte{7}, 32)
	cfg := config.Config{DatabaseURL: db.URL, WebhookKey: key, WebhookAllowLoopback: true}
	svc, err := delivery.New(store.New(db.Pool), delivery.Options{Key: key, AllowLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := svc.Create(ctx, "ops:alice", domain.EndpointInput{URL: "http://127.0.0.1:9/hooks", Description: "alice's app server"})
	if err != nil {
		t.Fatal(err)
	}
	register := func() (*devReceiver, *devEndpoint) {
		t.Helper()
		var out logBuffer
		r, err := startDevReceiver(&out)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.close() })
		e, err := registerDevReceiver(ctx, cfg, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		return r, e
	}
	endpoints := func() []string {
		t.Helper()
		eps, err := svc.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range eps {
			out = append(out, e.URL)
		}
		slices.Sort(out)
		return out
	}

	r1, e1 := register() // a run killed: never removed
	r2, e2 := register()
	if e1.id == e2.id {
		t.Fatal("the second run registered no endpoint of its own")
	}
	want := []string{"http://127.0.0.1:9/hooks", r2.url()}
	slices.Sort(want)
	if got := endpoints(); !slices.Equal(got, want) {
		t.Fatalf("endpoints %v; want %v (the first run's %s removed)", got, want, r1.url())
	}
	r2.mu.Lock()
	secrets := r2.verifier.Secrets
	r2.mu.Unlock()
	if len(secrets) != 1 || !strings.HasPrefix(secrets[0], "whsec_") {
		t.Fatalf("the receiver was not given its endpoint's secret")
	}
	if err := e2.remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	e1.pool.Close()
	if got := endpoints(); !slices.Equal(got, []string{"http://127.0.0.1:9/hooks"}) {
		t.Fatalf("endpoints after the run stopped: %v; want only %s's", got, theirs.Endpoint.ID)
	}
}

// devRun is `contractd dev` running in this process.
type devRun struct {
	stdout, stderr *logBuffer
	cancel         context.CancelFunc
	done           chan error
}

// startDev runs `contractd dev` on env and waits until it serves; it is
// stopped when t ends, if the test did not stop it.
func startDev(t *testing.T, env map[string]string) *devRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d := &devRun{stdout: &logBuffer{}, stderr: &logBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { d.done <- devCmd(ctx, nil, func(k string) string { return env[k] }, d.stdout, d.stderr) }()
	eventually(t, 2*time.Minute, "contractd dev to serve", func() bool {
		select {
		case err := <-d.done:
			t.Fatalf("contractd dev ended: %v\nstderr: %s", err, d.stderr)
		default:
		}
		return strings.Contains(d.stdout.String(), "contractd dev is running")
	})
	return d
}

// stop ends dev and waits for it to return, which it must do without an
// error.
func (d *devRun) stop(t *testing.T) {
	t.Helper()
	d.cancel()
	select {
	case err := <-d.done:
		if err != nil {
			t.Fatalf("contractd dev: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("contractd dev did not stop within 2 minutes of its context ending")
	}
}
