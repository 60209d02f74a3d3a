package main

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contractd/contractd/internal/pgcluster"
	"github.com/contractd/contractd/wechatpaysim"
)

// Postgres itself restarts, twice, while WeChat's sign notifications
// stream in: once in the middle of the stream (sessions cut, transactions in
// flight rolled back), and once for long enough that deliveries are refused
// while it is down. The cluster is a throwaway one the test starts with
// initdb and pg_ctl on a free port; the machine's shared cluster is never
// touched. Every contract ends signed with exactly one sign row and one
// inbox row, and WeChat was asked for exactly one session per contract.
func TestFaultPostgresRestartsUnderNotificationLoad(t *testing.T) {
	t.Parallel()
	cluster := pgcluster.Start(t)
	// Retries at 1/200 of WeChat's schedule: 75ms, 75ms, 150ms, 0.9s, 9s, ...
	s := startStack(t, stackOptions{ServerURL: cluster.URL, SimTimeScale: 0.005})

	const total, whileDown = 60, 6
	codes := make([]string, total)
	for i := range codes {
		codes[i] = fmt.Sprintf("restart-%02d", i)
		ntPreSign(t, s, codes[i])
	}

	// The stream: the simulated users sign the first total-whileDown
	// sessions one after another while the test restarts the server.
	var signed atomic.Int32
	streamDone := make(chan error, 1)
	go func() {
		for _, code := range codes[:total-whileDown] {
			if _, err := s.Sim.Sign(t.Context(), wechatpaysim.SignRequest{OutContractCode: code}); err != nil {
				streamDone <- fmt.Errorf("simulator sign %s: %w", code, err)
				return
			}
			signed.Add(1)
			time.Sleep(10 * time.Millisecond)
		}
		streamDone <- nil
	}()
	eventually(t, time.Minute, "a third of the stream signed", func() bool { return signed.Load() >= total/3 })
	cluster.Restart(t)
	if err := <-streamDone; err != nil {
		t.Fatal(err)
	}

	// Down for a while: these deliveries are refused and retried.
	cluster.Stop(t)
	for _, code := range codes[total-whileDown:] {
		ntSign(t, s, code)
	}
	eventually(t, time.Minute, "every delivery made while Postgres is down refused twice", func() bool {
		for _, code := range codes[total-whileDown:] {
			ds := ntDeliveries(s, code)
			if len(ds) != 1 || len(ds[0].Attempts) < 2 {
				return false
			}
		}
		return true
	})
	for _, code := range codes[total-whileDown:] {
		for _, a := range ntDeliveries(s, code)[0].Attempts {
			if ntIs2xx(a.Status) {
				t.Fatalf("a delivery for %s was acknowledged while Postgres was down: %v", code, ntStatuses(ntDeliveries(s, code)[0]))
			}
		}
	}
	cluster.StartAgain(t)

	eventually(t, 2*time.Minute, "every contract signed and every delivery acknowledged", func() bool {
		if s.count(`SELECT count(*) FROM contracts WHERE state = 'signed'`) != total {
			return false
		}
		for _, code := range codes {
			ds := ntDeliveries(s, code)
			if len(ds) != 1 || !ds[0].Done {
				return false
			}
		}
		return true
	})
	if n := s.count(`SELECT count(*) FROM contracts`); n != total {
		t.Errorf("%d contracts, want %d", n, total)
	}
	if n := s.count(`SELECT count(*) FROM contract_events WHERE event = 'sign'`); n != total {
		t.Errorf("%d sign history rows, want %d", n, total)
	}
	if n := s.count(`SELECT count(*) FROM (SELECT contract_pk FROM contract_events
		GROUP BY contract_pk HAVING count(*) FILTER (WHERE event = 'sign') <> 1
		OR count(*) FILTER (WHERE event = 'issue_session') <> 1 OR count(*) <> 2) odd`); n != 0 {
		t.Errorf("%d contracts whose history is not one issue_session and one sign", n)
	}
	if n := s.count(`SELECT count(*) FROM wechat_notifications`); n != total {
		t.Errorf("%d inbox rows, want %d (one per notification)", n, total)
	}
	if n := presignCalls(s); n != total {
		t.Errorf("%d WeChat pre-sign calls, want %d", n, total)
	}
	failed := 0
	for _, code := range codes {
		for _, a := range ntDeliveries(s, code)[0].Attempts {
			if !ntIs2xx(a.Status) {
				failed++
			}
		}
	}
	t.Logf("%d delivery attempts refused across the two restarts", failed)
}
