package main

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/contractd/contractd/internal/pgcluster"
)

// A DATABASE_URL naming both servers with target_session_attrs=read-write
// (pgx's multi-host form, the alternative to HAProxy): when the primary
// dies, requests answer 503 (never 500) until the standby is promoted, and
// then contractd serves from the new primary, reads and writes, without a
// restart.
func TestFaultMultiHostURLFollowsThePromotion(t *testing.T) {
	t.Parallel()
	primary := pgcluster.Start(t)
	standby := primary.StartStandby(t)
	s := startStack(t, stackOptions{ServerURL: primary.URL, DatabaseURL: func(schemaURL string) string {
		u, err := url.Parse(schemaURL)
		if err != nil {
			panic(err)
		}
		u.Host = fmt.Sprintf("127.0.0.1:%d,127.0.0.1:%d", primary.Port, standby.Port)
		q := u.Query()
		q.Set("target_session_attrs", "read-write")
		q.Set("connect_timeout", "2")
		u.RawQuery = q.Encode()
		return u.String()
	}})
	// The schema's cleanup drops it on the old primary: bring it back
	// before that runs.
	t.Cleanup(func() { primary.StartAgain(t) })

	ntPreSign(t, s, "mh-1")
	primary.WaitReplayed(t, standby)
	primary.Kill(t)

	// Down: the answer is 503 UNAVAILABLE, retryable, never a 500.
	eventually(t, time.Minute, "a GET answering 503 while no primary is up", func() bool {
		r := s.do(http.MethodGet, "/v1/contracts/mh-1", appToken, nil)
		if r.Status == http.StatusInternalServerError {
			t.Fatalf("GET during the outage: 500 %s", r.Body)
		}
		return r.Status == http.StatusServiceUnavailable
	})
	standby.Promote(t)

	eventually(t, 2*time.Minute, "the contract served by the promoted standby", func() bool {
		r := s.do(http.MethodGet, "/v1/contracts/mh-1", appToken, nil)
		if r.Status == http.StatusInternalServerError {
			t.Fatalf("GET after the promotion: 500 %s", r.Body)
		}
		return r.Status == http.StatusOK
	})
	ntPreSign(t, s, "mh-2") // a write, on the new primary
	r := s.do(http.MethodGet, "/v1/contracts/mh-2", appToken, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("GET of the contract written after the promotion: %d %s", r.Status, r.Body)
	}
}
