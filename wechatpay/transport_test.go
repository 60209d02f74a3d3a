package wechatpay

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// Concurrent calls reuse their connections: round after round of 16
// concurrent requests open no more than 16 connections in all (Go's default
// transport keeps 2 idle per host, so most of each round would reconnect).
func TestTransportKeepsConnectionsForConcurrentCalls(t *testing.T) {
	t.Parallel()
	var opened atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "{}")
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	client := &http.Client{Transport: newTransport()}
	const concurrent, rounds = 16, 5
	for round := 0; round < rounds; round++ {
		var wg sync.WaitGroup
		for i := 0; i < concurrent; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := client.Get(srv.URL)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}()
		}
		wg.Wait()
	}
	if n := opened.Load(); n > concurrent {
		t.Fatalf("%d rounds of %d concurrent calls opened %d connections, want at most %d", rounds, concurrent, n, concurrent)
	}
}
