package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// Many clients reading many contracts at once each get exactly their own
// contract's answer, byte for byte what a lone read of it answers: reads
// go to Postgres together in batches, and answers are made in reused
// buffers, so a mix-up would show here as another contract's fields or a
// stale tail of a longer answer.
func TestConcurrentGetsEachAnswerTheirOwnContractByteForByte(t *testing.T) {
	t.Parallel()
	s := startStack(t, stackOptions{})
	const contracts, clients, each = 300, 16, 60
	// Names of many lengths, so that answers differ in length.
	if _, err := s.DB.Pool.Exec(context.Background(), `INSERT INTO contracts (out_contract_code, product, channel, plan_id,
		state, version, contract_id, openid, user_display_name, signed_at)
		SELECT 'g-' || g, 'papay', 'app', 1000 + g, 'signed', 2, 'wx-' || g, 'o-' || g, repeat('n', 1 + g % 40), now()
		FROM generate_series(0, $1 - 1) g`, contracts); err != nil {
		t.Fatal(err)
	}
	alone := make([][]byte, contracts)
	for i := range contracts {
		r := s.do(http.MethodGet, fmt.Sprintf("/v1/contracts/g-%d", i), appToken, nil)
		if r.Status != http.StatusOK {
			t.Fatalf("GET g-%d: %d %s", i, r.Status, r.Body)
		}
		if want := fmt.Sprintf(`"user_display_name":"%s"`, strings.Repeat("n", 1+i%40)); !bytes.Contains(r.Body, []byte(want)) {
			t.Fatalf("GET g-%d alone: %s, want %s", i, r.Body, want)
		}
		alone[i] = r.Body
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for w := range clients {
		wg.Go(func() {
			for j := range each {
				i := (w*each + j*7) % contracts
				r := s.do(http.MethodGet, fmt.Sprintf("/v1/contracts/g-%d", i), appToken, nil)
				if r.Status != http.StatusOK || !bytes.Equal(r.Body, alone[i]) {
					errs <- fmt.Errorf("GET g-%d among others: %d %s, want %s", i, r.Status, r.Body, alone[i])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
