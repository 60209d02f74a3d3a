package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
)

// metricValue reads one sample from contractd's /metrics.
func metricValue(t *testing.T, s *stack, sample string) float64 {
	t.Helper()
	r := s.do(http.MethodGet, "/metrics", "", nil)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindSubmatch(r.Body)
	if m == nil {
		t.Fatalf("no %s in /metrics", sample)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// CONTRACTD_DB_MAX_CONNS sizes the pool the server really uses: under 40
// concurrent requests it never opens more connections than that, and the
// requests that found every connection taken waited for one.
func TestDBMaxConnsSizesThePool(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{Env: map[string]string{"CONTRACTD_DB_MAX_CONNS": "2"}})
	if v := metricValue(t, s, "contractd_db_pool_max_conns"); v != 2 {
		t.Fatalf("contractd_db_pool_max_conns %v, want 2", v)
	}
	ntPreSign(t, s, "pool-1")
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				r, err := send(t, s.URL, request{Method: http.MethodGet, Path: "/v1/contracts/pool-1", Token: appToken})
				if err != nil {
					errs <- err
					return
				}
				if r.Status != http.StatusOK {
					errs <- fmt.Errorf("GET answered %d", r.Status)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	open := metricValue(t, s, `contractd_db_pool_conns{state="acquired"}`) + metricValue(t, s, `contractd_db_pool_conns{state="idle"}`)
	if open > 2 {
		t.Fatalf("%v connections open with a pool of 2", open)
	}
	if metricValue(t, s, "contractd_db_pool_waits_total") == 0 {
		t.Fatal("200 requests from 40 clients on 2 connections never waited for one")
	}
}
