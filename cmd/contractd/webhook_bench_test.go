package main

import (
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contractd/contractd/webhook"
)

var (
	webhookBenchEvents = flag.Int("webhooks.catch-up", 100_000, "BenchmarkWebhooks: events written during the receiver's outage")
	webhookBenchOutage = flag.Duration("webhooks.outage", 0, "BenchmarkWebhooks: how long the receiver refuses at least (the back-off grows with it)")
)

// benchReceiver is a merchant's receiver on loopback for BenchmarkWebhooks:
// it verifies every delivery's signature with package webhook and keeps,
// per event, how long after it was recorded it arrived.
type benchReceiver struct {
	verifier webhook.Verifier
	refuse   atomic.Bool

	mu       sync.Mutex
	seen     map[string]bool
	lags     []time.Duration
	first    time.Time // first accepted delivery since reset
	last     time.Time // last accepted delivery
	failures int
	batches  int // accepted deliveries
}

func (r *benchReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.refuse.Load() {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	if err := r.verifier.Verify(req.Header.Get(webhook.SignatureHeader), body); err != nil {
		r.mu.Lock()
		r.failures++
		r.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	batch, err := webhook.Decode(body)
	if err != nil {
		r.mu.Lock()
		r.failures++
		r.mu.Unlock()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	now := time.Now()
	r.mu.Lock()
	if r.first.IsZero() {
		r.first = now
	}
	r.last = now
	r.batches++
	for _, e := range batch.Events {
		if !r.seen[e.EventID] {
			r.seen[e.EventID] = true
			r.lags = append(r.lags, now.Sub(e.RecordedAt))
		}
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// reset forgets what was received.
func (r *benchReceiver) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen, r.lags, r.first, r.last, r.batches = map[string]bool{}, nil, time.Time{}, time.Time{}, 0
}

func (r *benchReceiver) received() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// BenchmarkWebhooks measures webhook delivery (issue 21) with one receiver
// on loopback: the delivery lag (from an event's recorded_at to its arrival
// at the receiver, verified) while notifications stream at BenchmarkLoad's
// rate (16 clients, as fast as contractd takes them), and the time to
// catch up -webhooks.catch-up events written while the receiver refused
// every delivery (for at least -webhooks.outage: the longer the outage, the
// longer the back-off between retries, up to 10 minutes, which the time to
// the first accepted batch shows). The server is its own process. It runs once whatever b.N:
//
//	go test -run '^$' -bench BenchmarkWebhooks -benchtime 1x -timeout 1h ./cmd/contractd/
func BenchmarkWebhooks(b *testing.B) {
	const clients = 16
	n := 200_000
	sessions := 150_000
	dur := *loadDuration
	s := startStack(b, stackOptions{Env: map[string]string{"CONTRACTD_LOG_LEVEL": "error"}})
	fillBenchContracts(b, s, n, sessions)

	// The server process delivers; the stack's in-process server has no
	// webhook key, so it delivers nothing.
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	env := maps.Clone(s.Env)
	env["CONTRACTD_LOG_LEVEL"] = "error"
	env["CONTRACTD_WEBHOOK_KEY"] = base64.StdEncoding.EncodeToString(key)
	env["CONTRACTD_WEBHOOK_ALLOW_LOOPBACK"] = "true"
	delete(env, "CONTRACTD_DB_MAX_CONNS")
	p := cliStartServe(b, cliBuild(b), env)
	pid := p.cmd.Process.Pid

	recv := &benchReceiver{}
	recv.reset()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: recv, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })

	events := func() int { return s.count(`SELECT count(*) FROM contract_events`) }
	waitAll := func(want int, what string) {
		deadline := time.Now().Add(30 * time.Minute)
		for recv.received() < want {
			if time.Now().After(deadline) {
				b.Fatalf("%s: %d of %d events received after 30 minutes", what, recv.received(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Notifications at BenchmarkLoad's rate (16 clients, as fast as they are taken),
	// first with no endpoint, then with one (phase 1: the lag).
	addr := strings.TrimPrefix(p.URL, "http://")
	conns := make([]*rawConn, clients)
	for i := range conns {
		conns[i] = &rawConn{addr: addr}
		defer conns[i].close()
	}
	perPhase := 25_000
	ns := make([]loadNotification, 2*perPhase)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(ns); i += 4 {
				ns[i] = prepareNotification(b, s, fmt.Sprintf("b-%d", i))
			}
		}(w)
	}
	wg.Wait()
	postAll := func(ns []loadNotification) func(worker, i int) error {
		var next atomic.Int64
		return func(w, _ int) error {
			j := int(next.Add(1) - 1)
			if j >= len(ns) {
				return errExhausted
			}
			return conns[w].expect(http.MethodPost, "/v1/notifications/wechatpay", ns[j].header, ns[j].body, http.StatusNoContent)
		}
	}
	// Phase 0: the same load with no endpoint, for the cost of delivery.
	cpu0 := processCPU(b, pid)
	alone := loadPhase(b, s, "POST notification (PAPAY.SIGN), no webhook endpoint", clients, dur, pid, "", postAll(ns[:perPhase]))
	cpuAlone := processCPU(b, pid) - cpu0

	created := doAt(b, p.URL, http.MethodPost, "/v1/webhook-endpoints", opsToken,
		map[string]string{"url": "http://" + ln.Addr().String() + "/hooks", "description": "benchmark receiver"})
	if created.Status != http.StatusCreated {
		b.Fatalf("create endpoint: %d %s", created.Status, created.Body)
	}
	var ep struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	created.JSON(b, &ep)
	recv.verifier = webhook.Verifier{Secrets: []string{ep.Secret}}
	before := events()
	cpu0 = processCPU(b, pid)
	notify := loadPhase(b, s, "POST notification (PAPAY.SIGN) with one webhook endpoint", clients, dur, pid, "", postAll(ns[perPhase:]))
	written := events() - before
	waitAll(written, "lag phase")
	cpuAll := processCPU(b, pid) - cpu0
	recv.mu.Lock()
	lags, batches := slices.Clone(recv.lags), recv.batches
	recv.mu.Unlock()
	slices.Sort(lags)
	pct := func(p float64) time.Duration { return lags[int(math.Ceil(p*float64(len(lags))))-1] }

	// Phase 2: an outage, then the catch-up.
	recv.refuse.Store(true)
	recv.reset()
	before = events()
	outageStart := time.Now()
	if _, err := s.DB.Pool.Exec(b.Context(), `INSERT INTO contract_events (contract_pk, sub_mchid, out_contract_code,
		from_state, to_state, event, source, ignored, occurred_at, contract_version)
		SELECT c.id, '', c.out_contract_code, 'signed', 'signed', 'sign', 'reconcile', true, now(), c.version
		FROM generate_series(1, $1) g JOIN contracts c ON c.out_contract_code = 'b-' || (150000 + g % 50000)`,
		*webhookBenchEvents); err != nil {
		b.Fatal(err)
	}
	backlog := events() - before
	wrote := time.Since(outageStart)
	time.Sleep(time.Until(outageStart.Add(*webhookBenchOutage)))
	refusedFor := time.Since(outageStart)
	recv.refuse.Store(false)
	back := time.Now()
	cpu1 := processCPU(b, pid)
	waitAll(backlog, "catch-up")
	catchCPU := processCPU(b, pid) - cpu1
	recv.mu.Lock()
	first, last := recv.first, recv.last
	recv.mu.Unlock()

	fmt.Printf("webhooks, %s, %d cores, one receiver on loopback:\n", time.Now().UTC().Format("2006-01-02"), runtimeCores())
	fmt.Printf("  no endpoint: notifications %.0f/s (p99 %.2f ms), contractd CPU %.3f ms per notification\n",
		alone.rate, ms(alone.p99), 1000*cpuAlone/float64(alone.ops))
	fmt.Printf("  one endpoint: notifications %.0f/s (p99 %.2f ms); %d events delivered in %d deliveries (%.1f per delivery), lag p50 %.0f ms, p99 %.0f ms, max %.0f ms; contractd CPU %.3f ms per notification, delivery included\n",
		notify.rate, ms(notify.p99), len(lags), batches, float64(len(lags))/float64(max(batches, 1)), ms(pct(0.50)), ms(pct(0.99)), ms(lags[len(lags)-1]), 1000*cpuAll/float64(notify.ops))
	fmt.Printf("  catch-up: %d events written in %.1f s while the receiver refused for %.1f s; all received %.1f s after it accepted again (first accepted batch after %.1f s of back-off, then %.1f s: %.0f events/s); contractd CPU %.3f ms per event\n",
		backlog, wrote.Seconds(), refusedFor.Seconds(), last.Sub(back).Seconds(), first.Sub(back).Seconds(), last.Sub(first).Seconds(),
		float64(backlog)/last.Sub(first).Seconds(), 1000*catchCPU/float64(backlog))
	if stderr := p.stderr.String(); stderr != "" {
		fmt.Fprintf(os.Stdout, "contractd's log (errors only):\n%s\n", stderr[:min(len(stderr), 4000)])
	}
	b.ReportMetric(float64(pct(0.99))/float64(time.Millisecond), "lag-p99-ms")
}
