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

// heldStore is the real store whose throttle calls wait for release once
// hold is set, so that a test can gather callers behind one in flight.
type heldStore struct {
	countingStore
	hold    atomic.Bool
	release chan struct{}
}

func (h *heldStore) CountAuthAttempt(ctx context.Context, address string, failed bool, t domain.AuthThrottle) (domain.AuthCount, error) {
	h.counts.Add(1)
	if h.hold.Load() {
		select {
		case <-h.release:
		case <-ctx.Done():
			return domain.AuthCount{}, ctx.Err()
		}
	}
	return h.Store.CountAuthAttempt(ctx, address, failed, t)
}

// Right tokens that arrive together from an address without a fresh mark
// (the first requests after start-up, and every ClearFor after) ask the
// store once between them, not once each: an app server's 16 connections
// cost one round trip a second, not 16 at once, each on a pool connection
// that may first have to be opened.
func TestThrottleRightTokensArrivingTogetherAskTheStoreOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := &heldStore{countingStore: countingStore{Store: store.New(pgtest.New(t).Pool)}, release: make(chan struct{})}
	th := NewThrottle(st, domain.AuthThrottle{Limit: 5, Window: time.Hour}, nil)
	at := time.Now()
	th.now = func() time.Time { return at }
	st.hold.Store(true)

	const callers = 50
	var wg sync.WaitGroup
	var refused atomic.Int64
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := th.Attempt(ctx, "192.0.2.7", false); err != nil {
				refused.Add(1)
				t.Errorf("right token: %v", err)
			}
		}()
	}
	// Let the callers gather: until every one has asked the store (what
	// the old throttle did), or for two seconds.
	for deadline := time.Now().Add(2 * time.Second); st.counts.Load() < callers && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	close(st.release)
	wg.Wait()
	if n := st.counts.Load(); n != 1 || refused.Load() != 0 {
		t.Fatalf("%d right tokens arriving together asked the store %d times (%d refused); want once, none refused", callers, n, refused.Load())
	}
}

// A right token waiting on another's question is not failed by the asker
// going away: it asks again. One that goes away itself while waiting
// answers UNAVAILABLE without a store call of its own. A wrong token
// counted while a question is in flight takes it away: the right tokens
// after it ask the store afresh and are refused once the limit is passed.
func TestThrottleSharedQuestionOutlivesItsAskerAndYieldsToAWrongToken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := &heldStore{countingStore: countingStore{Store: store.New(pgtest.New(t).Pool)}, release: make(chan struct{})}
	rule := domain.AuthThrottle{Limit: 2, Window: time.Hour}
	th := NewThrottle(st, rule, nil)
	at := time.Now()
	th.now = func() time.Time { return at }
	st.hold.Store(true)
	waitCalls := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); st.counts.Load() < n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("store calls %d, want %d", st.counts.Load(), n)
			}
		}
	}
	waitAsking := func(key string, want bool) {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
			th.mu.Lock()
			_, ok := th.asking[key]
			th.mu.Unlock()
			if ok == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("question in flight for %s: %v, want %v", key, ok, want)
			}
		}
	}

	// The asker goes away; the waiter asks again and is admitted.
	askerCtx, cancelAsker := context.WithCancel(ctx)
	askerDone := make(chan error, 1)
	go func() { _, err := th.Attempt(askerCtx, "192.0.2.8", false); askerDone <- err }()
	waitCalls(1)
	waiterDone := make(chan error, 1)
	go func() { _, err := th.Attempt(ctx, "192.0.2.8", false); waiterDone <- err }()
	// A third waits with a context that ends first.
	goneCtx, cancelGone := context.WithCancel(ctx)
	goneDone := make(chan error, 1)
	go func() { _, err := th.Attempt(goneCtx, "192.0.2.8", false); goneDone <- err }()
	cancelGone()
	var de *domain.Error
	if err := <-goneDone; !errors.As(err, &de) || de.Code != domain.CodeUnavailable {
		t.Fatalf("a waiter whose caller went away: %v, want UNAVAILABLE", err)
	}
	cancelAsker()
	if err := <-askerDone; err == nil {
		t.Fatal("the asker whose caller went away was admitted")
	}
	waitCalls(2) // the waiter's own question
	close(st.release)
	if err := <-waiterDone; err != nil {
		t.Fatalf("the waiter after its asker went away: %v, want admitted", err)
	}
	if n := st.counts.Load(); n != 2 {
		t.Fatalf("store calls %d, want 2 (the asker's, then the waiter's)", n)
	}

	// A question in flight for another address; wrong tokens beyond the
	// limit meanwhile; the right token after them asks afresh rather than
	// waiting on the question, and is refused.
	st2 := &heldStore{countingStore: countingStore{Store: st.Store}, release: make(chan struct{})}
	th2 := NewThrottle(st2, rule, nil)
	th2.now = th.now
	st2.hold.Store(true)
	firstDone := make(chan error, 1)
	go func() { _, err := th2.Attempt(ctx, "192.0.2.9", false); firstDone <- err }()
	for deadline := time.Now().Add(time.Minute); st2.counts.Load() < 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first right token did not ask the store")
		}
	}
	st2.hold.Store(false)
	for i := 0; i <= rule.Limit; i++ {
		if _, err := th2.Attempt(ctx, "192.0.2.9", true); i < rule.Limit && err != nil {
			t.Fatalf("wrong token %d: %v", i+1, err)
		}
	}
	waitAsking("192.0.2.9", false)
	_, err := th2.Attempt(ctx, "192.0.2.9", false)
	if !errors.As(err, &de) || de.Code != domain.CodeTooManyRequests {
		t.Fatalf("a right token after the wrong ones: %v, want TOO_MANY_REQUESTS", err)
	}
	close(st2.release)
	// Its question reaches Postgres only now, after the wrong tokens: it
	// is refused too, and marks nothing.
	if err := <-firstDone; !errors.As(err, &de) || de.Code != domain.CodeTooManyRequests {
		t.Fatalf("the right token whose question was overtaken: %v, want TOO_MANY_REQUESTS", err)
	}
	th2.mu.Lock()
	_, marked := th2.clear["192.0.2.9"]
	th2.mu.Unlock()
	if marked {
		t.Fatal("the question overtaken by wrong tokens marked the address clear")
	}
}
