package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/contractd/contractd/internal/pgcluster"
	"github.com/jackc/pgx/v5/pgxpool"
)

// A real failover under a running contractd, as Patroni behind a load
// balancer does it: contractd reaches Postgres through a proxy; WeChat's
// sign notification is acknowledged (204) and then lost with the primary;
// the standby is promoted and the proxy sent to it. contractd's own timeline
// watch notices the new timeline and asks WeChat about the open session,
// and the contract ends signed on the new primary, within seconds and
// without reconciliation's schedule (set to an hour here). A feed reader
// whose cursor came from the lost row is told lost.
func TestFaultFailoverHealsAnAcknowledgedSigningItLost(t *testing.T) {
	t.Parallel()
	primary := pgcluster.Start(t)
	standby := primary.StartStandby(t)
	proxy := ntStartTCPProxy(t, fmt.Sprintf("127.0.0.1:%d", primary.Port))
	s := startStack(t, stackOptions{ServerURL: primary.URL, DatabaseURL: proxy.URL, Env: map[string]string{
		"CONTRACTD_TIMELINE_INTERVAL": "200ms", "CONTRACTD_RECONCILE_AFTER": "1h"}})
	// The schema's cleanup drops it on the old primary: bring it back (on
	// its own, lost timeline) before that runs.
	t.Cleanup(func() { primary.StartAgain(t) })

	ntPreSign(t, s, "fo-1")
	var lostCursor string
	primary.FailOver(t, standby, func() {
		ntSign(t, s, "fo-1")
		eventually(t, time.Minute, "fo-1 signed on the primary", func() bool { return ntState(t, s, "fo-1") == "signed" })
		eventually(t, time.Minute, "the feed serves the signing", func() bool {
			r := s.do(http.MethodGet, "/v1/events", opsToken, nil)
			var f struct {
				Items      []struct{ Event string } `json:"items"`
				NextCursor string                   `json:"next_cursor"`
			}
			r.JSON(t, &f)
			if len(f.Items) == 2 && f.Items[1].Event == "sign" {
				lostCursor = f.NextCursor
				return true
			}
			return false
		})
	})
	proxy.Cut()
	proxy.Retarget(fmt.Sprintf("127.0.0.1:%d", standby.Port))
	proxy.Restore(t)

	u, err := url.Parse(s.DB.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = fmt.Sprintf("127.0.0.1:%d", standby.Port)
	pool, err := pgxpool.New(context.Background(), u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	state := func() string {
		var st string
		_ = pool.QueryRow(context.Background(), `SELECT state FROM contracts WHERE out_contract_code = 'fo-1'`).Scan(&st)
		return st
	}
	eventually(t, 2*time.Minute, "fo-1 signed again on the new primary by the healing", func() bool { return state() == "signed" })
	var source string
	if err := pool.QueryRow(context.Background(), `SELECT source FROM contract_events
		WHERE out_contract_code = 'fo-1' AND event = 'sign'`).Scan(&source); err != nil || source != "reconcile" {
		t.Fatalf("fo-1's sign row: source %q (%v), want one, recorded by reconcile", source, err)
	}
	var healed int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM timelines WHERE timeline = 2`).Scan(&healed); err != nil || healed != 1 {
		t.Fatalf("timeline 2 recorded %d times (%v), want once", healed, err)
	}

	r := s.do(http.MethodGet, "/v1/events?after="+url.QueryEscape(lostCursor), opsToken, nil)
	var f struct {
		Lost bool `json:"lost"`
	}
	r.JSON(t, &f)
	if r.Status != http.StatusOK || !f.Lost {
		t.Fatalf("the lost cursor: %d %s, want lost", r.Status, r.Body)
	}
}
