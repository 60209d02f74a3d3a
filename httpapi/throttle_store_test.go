package httpapi

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/store"
)

// countingStore is the real store with the throttle's round trips counted.
type countingStore struct {
	*store.Store
	counts atomic.Int64
}

func (c *countingStore) CountAuthAttempt(ctx context.Context, address string, failed bool, t domain.AuthThrottle) (domain.AuthCount, error) {
	c.counts.Add(1)
	return c.Store.CountAuthAttempt(ctx, address, failed, t)
}

// A right token from an address found below the limit is not counted again
// for ClearFor; a wrong token is always counted, forgets the mark, and the
// limit on wrong tokens stays exact under a burst.
func TestThrottleRightTokensSkipTheStoreWhileClearWrongOnesNever(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := &countingStore{Store: store.New(pgtest.New(t).Pool)}
	rule := domain.AuthThrottle{Limit: 5, Window: time.Hour}
	th := NewThrottle(st, rule, nil)
	// The clock stands still, so that a loaded machine cannot let ClearFor
	// pass in the middle of the test.
	at := time.Now()
	th.now = func() time.Time { return at }

	// A right token finds the address clear in the store; 200 more at once
	// are admitted without asking it.
	if _, err := th.Attempt(ctx, "192.0.2.1", false); err != nil {
		t.Fatal(err)
	}
	if st.counts.Load() != 1 {
		t.Fatalf("store calls %d, want 1", st.counts.Load())
	}
	var wg sync.WaitGroup
	var refused atomic.Int64
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := th.Attempt(ctx, "192.0.2.1", false); err != nil {
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if refused.Load() != 0 {
		t.Fatalf("%d right tokens refused from a clear address", refused.Load())
	}
	first := st.counts.Load()
	if first != 1 {
		t.Fatalf("the store was asked %d more times for 200 right tokens within ClearFor; want 0", first-1)
	}

	// 100 wrong tokens at once from the same address: each one counted,
	// exactly the limit let through.
	var through atomic.Int64
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := th.Attempt(ctx, "192.0.2.1", true)
			var de *domain.Error
			switch {
			case err == nil:
				through.Add(1)
			case errors.As(err, &de) && de.Code == domain.CodeTooManyRequests:
			default:
				t.Errorf("wrong token: %v", err)
			}
		}()
	}
	wg.Wait()
	if through.Load() != int64(rule.Limit) || st.counts.Load() != first+100 {
		t.Fatalf("%d wrong tokens let through with %d store calls; want %d and %d", through.Load(), st.counts.Load()-first, rule.Limit, 100)
	}
	// The wrong tokens forgot the mark: a right token now asks the store and
	// is refused for the window.
	_, err := th.Attempt(ctx, "192.0.2.1", false)
	var de *domain.Error
	if !errors.As(err, &de) || de.Code != domain.CodeTooManyRequests || st.counts.Load() != first+101 {
		t.Fatalf("right token after the burst: %v (store calls %d); want TOO_MANY_REQUESTS after asking the store", err, st.counts.Load()-first)
	}
	// Once ClearFor has passed since a clear finding, a right token from
	// another address asks the store again.
	if _, err := th.Attempt(ctx, "192.0.2.2", false); err != nil {
		t.Fatal(err)
	}
	n := st.counts.Load()
	at = at.Add(ClearFor)
	if _, err := th.Attempt(ctx, "192.0.2.2", false); err != nil || st.counts.Load() != n+1 {
		t.Fatalf("right token after ClearFor: %v, store calls %d; want admitted after asking the store", err, st.counts.Load()-n)
	}
}
