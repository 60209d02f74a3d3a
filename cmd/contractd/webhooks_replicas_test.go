package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contractd/contractd/delivery"
	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/store"
)

// hookRequest is one delivery a test receiver got: when its handler began
// and ended (ended: answered, or saw the connection close), from which
// address, and what it carried.
type hookRequest struct {
	Start, End time.Time
	Remote     string
	Status     int
	DeliveryID string
	Events     []domain.HistoryEntry
}

// hookReceiver is a real HTTP server recording deliveries. It holds the
// first one open until its connection closes; it accepts every other.
type hookReceiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     []hookRequest
	holding chan hookRequest // the first request, once it arrived
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{holding: make(chan hookRequest, 1)}
	first := true
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		d := hookRequest{Start: time.Now(), Remote: req.RemoteAddr}
		body, _ := io.ReadAll(req.Body)
		var b struct {
			DeliveryID string                `json:"delivery_id"`
			Events     []domain.HistoryEntry `json:"events"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			t.Errorf("receiver: %v", err)
		}
		d.DeliveryID, d.Events = b.DeliveryID, b.Events
		r.mu.Lock()
		hold := first
		first = false
		r.mu.Unlock()
		if hold {
			r.holding <- d
			// Held open until the sender goes away (the server cancels
			// the request's context when its connection closes).
			<-req.Context().Done()
			d.End = time.Now()
			r.record(d)
			return
		}
		d.Status = http.StatusOK
		d.End = time.Now()
		r.record(d)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *hookReceiver) record(d hookRequest) {
	r.mu.Lock()
	r.got = append(r.got, d)
	r.mu.Unlock()
}

func (r *hookReceiver) requests() []hookRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func hookEventIDs(hs []domain.HistoryEntry) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.EventID
	}
	return out
}

// socketOwner returns which of pids holds the TCP connection whose local
// address is local (found in /proc/net/tcp by port, then among the
// processes' file descriptors by socket inode); 0 when none does.
func socketOwner(t *testing.T, local string, pids ...int) int {
	t.Helper()
	_, port, err := net.SplitHostPort(local)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	want := fmt.Sprintf(":%04X", p)
	var inodes []string
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 9 && strings.HasSuffix(fields[1], want) {
				inodes = append(inodes, "socket:["+fields[9]+"]")
			}
		}
		f.Close()
	}
	for _, pid := range pids {
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
		for _, fd := range fds {
			if link, err := os.Readlink(fd); err == nil && slices.Contains(inodes, link) {
				return pid
			}
		}
	}
	return 0
}

// Issue 21, acceptance 2: two contractd processes deliver one endpoint;
// the receiver holds the first attempt open; SIGKILL of the replica whose
// attempt it is ends with the other one sending that same batch (same
// delivery_id, same events) once the dead one's lease has lapsed on
// Postgres's clock (the real 15 s TTL); no two attempts overlap in time;
// nothing is missed: the receiver gets every event of the feed since the
// endpoint's creation, in feed order.
func TestWebhookFailoverBetweenReplicas(t *testing.T) {
	t.Parallel()
	// The holder is told by which process owns the receiver's connection,
	// read from /proc (Linux, where the suite runs).
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Fatalf("this test tells which replica holds a connection from /proc: %v", err)
	}
	bin := cliBuild(t)
	s := startStack(t, stackOptions{})
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	env := maps.Clone(s.Env)
	env["CONTRACTD_WEBHOOK_KEY"] = base64.StdEncoding.EncodeToString(key)
	env["CONTRACTD_WEBHOOK_ALLOW_LOOPBACK"] = "true"

	rcv := newHookReceiver(t)
	svc, err := delivery.New(store.New(s.DB.Pool), delivery.Options{Key: key, AllowLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	created, err := svc.Create(ctx, "ops:test", domain.EndpointInput{URL: rcv.URL + "/hook"})
	if err != nil {
		t.Fatal(err)
	}
	procs := []*cliProcess{cliStartServe(t, bin, env), cliStartServe(t, bin, env)}
	pids := []int{procs[0].cmd.Process.Pid, procs[1].cmd.Process.Pid}

	code := func(i int) string { return fmt.Sprintf("wh-rep-%02d", i) }
	for i := range 3 {
		ntPreSignAt(t, procs[i%2].URL, code(i), 123)
		ntSign(t, s, code(i))
	}
	var first hookRequest
	select {
	case first = <-rcv.holding:
	case <-time.After(2 * time.Minute):
		t.Fatal("no delivery within two minutes")
	}
	holder := socketOwner(t, first.Remote, pids...)
	if holder == 0 {
		t.Fatalf("no replica holds the connection from %s", first.Remote)
	}
	var token string
	if err := s.DB.Pool.QueryRow(ctx, `SELECT lease_token FROM webhook_endpoints WHERE id = $1`, created.Endpoint.ID).Scan(&token); err != nil || token == "" {
		t.Fatalf("lease token %q %v", token, err)
	}
	dead := procs[slices.Index(pids, holder)]
	killedAt := time.Now()
	killProcess(t, dead)

	// The survivor sends the same batch once the lease has lapsed.
	eventually(t, 2*time.Minute, "the other replica to send the batch again", func() bool {
		for _, d := range rcv.requests() {
			if d.Status == http.StatusOK {
				return true
			}
		}
		return false
	})
	var again hookRequest
	for _, d := range rcv.requests() {
		if d.Status == http.StatusOK {
			again = d
			break
		}
	}
	if again.DeliveryID != first.DeliveryID || !slices.Equal(hookEventIDs(again.Events), hookEventIDs(first.Events)) {
		t.Fatalf("after the kill: delivery %s with %v, want the held batch %s with %v",
			again.DeliveryID, hookEventIDs(again.Events), first.DeliveryID, hookEventIDs(first.Events))
	}
	if owner := socketOwner(t, again.Remote, pids...); owner == holder {
		t.Fatalf("the batch came again from the killed replica %d", holder)
	}
	var newToken string
	if err := s.DB.Pool.QueryRow(ctx, `SELECT COALESCE(lease_token, '') FROM webhook_endpoints WHERE id = $1`, created.Endpoint.ID).Scan(&newToken); err != nil || newToken == token {
		t.Fatalf("the lease is still %q (%v)", newToken, err)
	}

	// More events, delivered by the survivor; then nothing is missing.
	for i := 3; i < 6; i++ {
		ntPreSignAt(t, procs[slices.Index(pids, holder)^1].URL, code(i), 123)
		ntSign(t, s, code(i))
	}
	var want []domain.HistoryEntry
	eventually(t, 2*time.Minute, "every event of the feed since the endpoint's creation", func() bool {
		want = nil
		cursor := created.Endpoint.Cursor
		for {
			page, err := store.New(s.DB.Pool).Feed(ctx, cursor, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Items) == 0 {
				break
			}
			want, cursor = append(want, page.Items...), page.Next
		}
		ep, err := svc.Get(ctx, created.Endpoint.ID)
		return err == nil && len(want) == 12 && ep.LagEvents == 0 && !ep.InFlight()
	})
	all := rcv.requests()
	slices.SortFunc(all, func(a, b hookRequest) int { return a.Start.Compare(b.Start) })
	var accepted []domain.HistoryEntry
	seen := map[string]bool{}
	for i, d := range all {
		if i > 0 && d.Start.Before(all[i-1].End) {
			t.Fatalf("attempt %d began at %v, before attempt %d ended at %v", i, d.Start, i-1, all[i-1].End)
		}
		if d.Status == http.StatusOK && !seen[d.DeliveryID] {
			seen[d.DeliveryID] = true
			accepted = append(accepted, d.Events...)
		}
	}
	if !slices.Equal(hookEventIDs(accepted), hookEventIDs(want)) {
		t.Fatalf("received %v, want the feed's %v", hookEventIDs(accepted), hookEventIDs(want))
	}
	t.Logf("held attempt ended %v after the kill; the batch came again %v after it", all[0].End.Sub(killedAt), again.Start.Sub(killedAt))
}
