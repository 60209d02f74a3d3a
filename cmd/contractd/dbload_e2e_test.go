package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contractd/contractd/wechatpaysim"
)

// loadClient sends the concurrent requests of the tests below: many
// connections to one host, each request bounded by its own deadline.
var loadClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1000, MaxConnsPerHost: 0}}

// loadDo sends one request that must be answered within limit, through
// send (so its answer is checked against openapi.yaml). Unlike stack.do it
// may run on any goroutine: it returns an error instead of failing the test.
func loadDo(t testing.TB, base, method, path, token string, limit time.Duration) (response, error) {
	r, err := send(t, base, request{Method: method, Path: path, Token: token,
		Client: &http.Client{Timeout: limit, Transport: loadClient.Transport}})
	if err != nil {
		return response{}, fmt.Errorf("no answer within %s: %w", limit, err)
	}
	return r, nil
}

// holdRow locks code's contract row from a session of the test's own,
// as another replica's long transaction would, until the returned release
// is called (or the test ends).
func holdRow(t *testing.T, s *stack, code string) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := s.DB.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	if err := tx.QueryRow(ctx, `SELECT id FROM contracts WHERE sub_mchid = '' AND out_contract_code = $1 FOR UPDATE`, code).Scan(&id); err != nil {
		_ = tx.Rollback(ctx)
		t.Fatalf("lock %s: %v", code, err)
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback(ctx) }) }
	t.Cleanup(release)
	return release
}

// probe keeps asking for a single contract and for /readyz until stop is
// closed; each must answer (200) within limit. It returns the first
// failure, or nil, and how many probes of each answered.
func probe(t testing.TB, base, code string, limit time.Duration, stop <-chan struct{}) (gets, readies int, err error) {
	for {
		select {
		case <-stop:
			return gets, readies, nil
		default:
		}
		a, err := loadDo(t, base, http.MethodGet, "/v1/contracts/"+code, appToken, limit)
		if err != nil {
			return gets, readies, err
		}
		if a.Status != http.StatusOK {
			return gets, readies, fmt.Errorf("GET /v1/contracts/%s answered %d %s", code, a.Status, a.Body)
		}
		gets++
		r, err := loadDo(t, base, http.MethodGet, "/readyz", "", limit)
		if err != nil {
			return gets, readies, err
		}
		var body struct{ Status, DB string }
		_ = json.Unmarshal(r.Body, &body)
		if r.Status != http.StatusOK || body.Status != "ready" || (body.DB != "ok" && body.DB != "busy") {
			return gets, readies, fmt.Errorf("/readyz answered %d %s, want 200 ready with db ok or busy", r.Status, r.Body)
		}
		readies++
		time.Sleep(20 * time.Millisecond)
	}
}

// One contract row locked elsewhere (another replica's transaction, a
// console query gone wrong) must cost its own callers a bounded wait and
// nobody else anything. Issue: 40 syncs of a locked contract held the whole
// pool, a GET of another contract took 16.8 s and /readyz said 503.
//
// The row is held until every sync has answered, with
// CONTRACTD_DB_LOCK_TIMEOUT 2s: every sync must answer 409 IN_PROGRESS with
// Retry-After while the row is still held (a sync that waited for the row
// would never answer, and its client's generous deadline would end the
// test), while GETs of another contract and /readyz keep answering. A notification for a locked
// contract is refused (WeChat retries) and applied once the row is free.
func TestOneLockedRowStallsNothing(t *testing.T) {
	t.Parallel()
	const lockTimeout = 2 * time.Second
	s := startStack(t, stackOptions{Env: map[string]string{
		"CONTRACTD_DB_LOCK_TIMEOUT": lockTimeout.String(), "CONTRACTD_DB_STATEMENT_TIMEOUT": "10s"}})
	ntPreSign(t, s, "held")
	ntPreSign(t, s, "other")
	// WeChat has the contract SIGNED, and contractd does not know yet: each
	// sync learns it from WeChat and must lock the row to record it.
	s.Sim.SetFaults(wechatpaysim.Faults{DropDeliveries: true})
	ntSign(t, s, "held")
	s.Sim.SetFaults(wechatpaysim.Faults{})

	release := holdRow(t, s, "held")
	// A deadline that only a stall reaches: the row stays held until every
	// sync has answered.
	answerWithin := 2 * time.Minute

	stop := make(chan struct{})
	probed := make(chan error, 1)
	var gets, readies int
	go func() {
		var err error
		gets, readies, err = probe(t, s.URL, "other", answerWithin, stop)
		probed <- err
	}()

	const syncs = 40
	answers := make([]response, syncs)
	errs := make([]error, syncs)
	var wg sync.WaitGroup
	for i := range syncs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i], errs[i] = loadDo(t, s.URL, http.MethodPost, "/v1/contracts/held/sync", opsToken, answerWithin)
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-probed; err != nil {
		t.Errorf("while 40 syncs waited on a locked row: %v", err)
	}
	for i := range syncs {
		if errs[i] != nil {
			t.Fatalf("sync %d: %v", i, errs[i])
		}
		a := answers[i]
		var e struct{ Code string }
		_ = json.Unmarshal(a.Body, &e)
		ra, _ := strconv.Atoi(a.Header.Get("Retry-After"))
		if a.Status != http.StatusConflict || e.Code != "IN_PROGRESS" || ra < 1 {
			t.Fatalf("sync %d of a locked row: %d %s (Retry-After %q), want 409 IN_PROGRESS with Retry-After",
				i, a.Status, a.Body, a.Header.Get("Retry-After"))
		}
	}
	if gets == 0 || readies == 0 {
		t.Fatalf("no probe answered while the syncs waited (%d GETs, %d /readyz)", gets, readies)
	}
	if n := s.count(`SELECT count(*) FROM contract_events e JOIN contracts c ON c.id = e.contract_pk
		WHERE c.out_contract_code = 'held' AND e.event = 'sign'`); n != 0 {
		t.Fatalf("%d sign rows written while the row was locked", n)
	}

	// A notification for a locked contract: refused while the row is
	// held, so WeChat retries it, and applied exactly once afterwards.
	ntPreSign(t, s, "notified")
	releaseNotified := holdRow(t, s, "notified")
	ntSign(t, s, "notified")
	eventually(t, 30*time.Second, "WeChat's notification refused twice while the row is held", func() bool {
		for _, d := range s.Sim.Deliveries() {
			if d.OutContractCode == "notified" && len(d.Attempts) >= 2 {
				for _, at := range d.Attempts {
					if at.Status >= 200 && at.Status < 300 {
						t.Fatalf("a delivery for a locked row answered %d", at.Status)
					}
				}
				return true
			}
		}
		return false
	})
	if n := s.count(`SELECT count(*) FROM wechat_notifications WHERE out_contract_code = 'notified'`); n != 0 {
		t.Fatalf("%d inbox rows for a notification refused under a lock", n)
	}
	releaseNotified()
	eventually(t, 60*time.Second, "the retried notification applied", func() bool { return ntState(t, s, "notified") == "signed" })
	if n := s.count(`SELECT count(*) FROM wechat_notifications WHERE out_contract_code = 'notified' AND outcome = 'applied'`); n != 1 {
		t.Fatalf("%d applied inbox rows, want 1", n)
	}

	// Once the row is free, a sync records what WeChat says.
	release()
	r := s.do(http.MethodPost, "/v1/contracts/held/sync", opsToken, nil)
	if r.Status != http.StatusOK || r.Map(t)["state"] != "signed" {
		t.Fatalf("sync after the hold: %d %s", r.Status, r.Body)
	}
}

// Heavy readers cannot take the pool: with 800 concurrent 500-row list
// pages, a single contract's GET and /readyz keep answering. Every page is
// answered: served, or, when it found no place among the heavy readers
// within the statement timeout, shed as 503 UNAVAILABLE with Retry-After.
func TestListFloodStallsNothing(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	ntPreSign(t, s, "single")
	// 500 more contracts, written directly: the pages are what matters.
	if _, err := s.DB.Pool.Exec(context.Background(), `INSERT INTO contracts (out_contract_code, product, channel, plan_id, state, user_display_name)
		SELECT 'bulk-' || g, 'papay', 'app', 123, 'created', 'Zhang San' FROM generate_series(1, 500) g`); err != nil {
		t.Fatal(err)
	}
	const pages = 800
	answerWithin := 2 * time.Minute

	stop := make(chan struct{})
	probed := make(chan error, 1)
	var gets, readies int
	go func() {
		var err error
		gets, readies, err = probe(t, s.URL, "single", answerWithin, stop)
		probed <- err
	}()
	var wg sync.WaitGroup
	var served, shed atomic.Int32
	errs := make(chan error, pages)
	for range pages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := loadDo(t, s.URL, http.MethodGet, "/v1/contracts?limit=500", opsToken, 2*time.Minute)
			var body struct {
				Code  string
				Items []json.RawMessage
			}
			if err == nil {
				_ = json.Unmarshal(a.Body, &body)
			}
			switch {
			case err != nil:
				errs <- err
			case a.Status == http.StatusOK && len(body.Items) == 500:
				served.Add(1)
			case a.Status == http.StatusServiceUnavailable && body.Code == "UNAVAILABLE" && a.Header.Get("Retry-After") != "":
				shed.Add(1)
			default:
				errs <- fmt.Errorf("list page: %d %.200s", a.Status, a.Body)
			}
		}()
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := <-probed; err != nil {
		t.Fatalf("while %d list pages were read: %v", pages, err)
	}
	if gets == 0 || readies == 0 {
		t.Fatalf("no probe answered during the list pages (%d GETs, %d /readyz)", gets, readies)
	}
	if served.Load() == 0 || served.Load()+shed.Load() != pages {
		t.Fatalf("%d pages served and %d shed of %d", served.Load(), shed.Load(), pages)
	}
	t.Logf("%d pages served, %d shed; %d GETs and %d /readyz answered meanwhile", served.Load(), shed.Load(), gets, readies)
}

// /readyz has a connection of its own: with every pooled connection taken
// (two syncs waiting on two locked rows, a pool of 2) it answers 200 with
// "db":"busy", promptly; a load balancer must not drop every replica at
// once for load. Only an unreachable database or an old schema is 503
// (TestCLIReadyzFollowsTheDatabase).
func TestReadyzIsBusyNotDownWhenThePoolIsTaken(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{Env: map[string]string{
		"CONTRACTD_DB_MAX_CONNS": "2", "CONTRACTD_DB_LOCK_TIMEOUT": "20s", "CONTRACTD_DB_STATEMENT_TIMEOUT": "30s"}})
	var releases []func()
	for _, code := range []string{"busy-1", "busy-2"} {
		ntPreSign(t, s, code)
		s.Sim.SetFaults(wechatpaysim.Faults{DropDeliveries: true})
		ntSign(t, s, code)
		s.Sim.SetFaults(wechatpaysim.Faults{})
		releases = append(releases, holdRow(t, s, code))
	}
	if r := s.do(http.MethodGet, "/readyz", "", nil); r.Status != http.StatusOK || r.Map(t)["db"] != "ok" {
		t.Fatalf("/readyz with the pool free: %d %s, want 200 db ok", r.Status, r.Body)
	}
	var wg sync.WaitGroup
	for _, code := range []string{"busy-1", "busy-2"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = loadDo(t, s.URL, http.MethodPost, "/v1/contracts/"+code+"/sync", opsToken, time.Minute)
		}()
	}
	eventually(t, time.Minute, "/readyz 200 with db busy", func() bool {
		a, err := loadDo(t, s.URL, http.MethodGet, "/readyz", "", time.Minute)
		if err != nil {
			t.Fatalf("/readyz with the pool taken: %v", err)
		}
		var body struct{ Status, DB string }
		_ = json.Unmarshal(a.Body, &body)
		if a.Status != http.StatusOK {
			t.Fatalf("/readyz with the pool taken: %d %s, want 200", a.Status, a.Body)
		}
		return body.DB == "busy"
	})
	for _, release := range releases {
		release()
	}
	wg.Wait()
}
