package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgtest"
)

// keyReadsFixture is a store whose reads by key send one query at a time,
// its contracts, and a way to hold every query until released.
type keyReadsFixture struct {
	st    *Store
	db    *pgtest.Schema
	mu    sync.Mutex
	sizes []int // reads per query sent, in order
}

func newKeyReadsFixture(t *testing.T, keys []domain.Key) *keyReadsFixture {
	t.Helper()
	db := pgtest.New(t)
	f := &keyReadsFixture{st: New(db.Pool), db: db}
	f.st.byKey.limit = 1
	for i, k := range keys {
		plan := int64(1000 + i)
		if _, err := f.st.Create(context.Background(), domain.Contract{SubMchID: k.SubMchID, OutContractCode: k.OutContractCode,
			Product: domain.ProductPapay, Channel: domain.ChannelApp, PlanID: &plan, State: domain.StateCreated}); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// send is sendKeyReads, counted.
func (f *keyReadsFixture) send(ctx context.Context, batch []*keyRead) {
	f.mu.Lock()
	f.sizes = append(f.sizes, len(batch))
	f.mu.Unlock()
	f.st.sendKeyReads(ctx, batch)
}

// blockTable locks the contracts table until release, so that the next
// query reading it waits in Postgres; it returns once one does.
func (f *keyReadsFixture) blockTable(t *testing.T, read func()) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := f.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE contracts IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback(ctx) }) }
	t.Cleanup(release)
	go read()
	waitFor(t, "a read waiting on the locked table", func() bool {
		var n int
		_ = f.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
			AND query LIKE '%FROM contracts%' AND query NOT LIKE '%pg_stat_activity%'`).Scan(&n)
		return n > 0
	})
	return release
}

// holdFirst reads key while the table is locked and returns once that
// read's query waits in Postgres: release lets every query go, and first
// then delivers the read's answer.
func (f *keyReadsFixture) holdFirst(t *testing.T, key domain.Key) (release func(), first <-chan keyAnswer) {
	t.Helper()
	answer := make(chan keyAnswer, 1)
	release = f.blockTable(t, func() {
		var a keyAnswer
		a.c, a.err = f.st.byKey.get(context.Background(), key, f.send)
		answer <- a
	})
	return release, answer
}

func (f *keyReadsFixture) queued() int {
	f.st.byKey.mu.Lock()
	defer f.st.byKey.mu.Unlock()
	return len(f.st.byKey.queued)
}

// waitFor polls cond until it holds; the deadline only catches a stall.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never saw %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type keyAnswer struct {
	c   domain.Contract
	err error
}

// While a read's query is in flight (and none more may be), the reads
// that arrive queue and then go to Postgres together in one query, and
// each caller gets exactly its own contract: a key asked for that mixes one
// contract's sub-merchant with another's code is not found, though the
// query's ANY on both columns matches rows of both.
func TestKeyReadsQueuedWhileAQueryIsInFlightGoInOneQuery(t *testing.T) {
	t.Parallel()
	// A batch whose rows are few is matched to its readers by looking, a
	// larger one through a map: both, with more rows than smallKeyBatch
	// and fewer.
	for _, n := range []int{8, 2} {
		t.Run(fmt.Sprintf("%d contracts", n+2), func(t *testing.T) {
			t.Parallel()
			keyReadsQueuedWhileAQueryIsInFlight(t, n)
		})
	}
}

func keyReadsQueuedWhileAQueryIsInFlight(t *testing.T, n int) {
	var stored []domain.Key
	for i := range n {
		stored = append(stored, domain.Key{OutContractCode: fmt.Sprintf("k%d", i)})
	}
	stored = append(stored, domain.Key{SubMchID: "1900000109", OutContractCode: "k0"}, domain.Key{SubMchID: "1900000110", OutContractCode: "k1"})
	f := newKeyReadsFixture(t, stored)
	asked := append(slices.Clone(stored[1:]),
		domain.Key{SubMchID: "1900000109", OutContractCode: "k1"}, // both halves exist, the pair does not
		domain.Key{OutContractCode: "missing"},
		stored[n-1], // the same key twice in one query
	)
	ctx := context.Background()
	answers := make([]keyAnswer, len(asked))
	release, firstDone := f.holdFirst(t, stored[0])
	var wg sync.WaitGroup
	for i, k := range asked {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i].c, answers[i].err = f.st.byKey.get(ctx, k, f.send)
		}()
	}
	waitFor(t, "every later read queued", func() bool { return f.queued() == len(asked) })
	release()
	wg.Wait()
	first := <-firstDone

	if !slices.Equal(f.sizes, []int{1, len(asked)}) {
		t.Fatalf("reads per query %v, want [1 %d]: the first alone, then every queued read in one", f.sizes, len(asked))
	}
	if first.err != nil || first.c.Key() != stored[0] {
		t.Fatalf("the first read answered %v %v", first.c.Key(), first.err)
	}
	for i, k := range asked {
		a := answers[i]
		switch {
		case k.OutContractCode == "missing" || k == (domain.Key{SubMchID: "1900000109", OutContractCode: "k1"}):
			if !domain.IsCode(a.err, domain.CodeNotFound) {
				t.Errorf("read of %v answered %v %v, want not found", k, a.c.Key(), a.err)
			}
		case a.err != nil || a.c.Key() != k:
			t.Errorf("read of %v answered %v %v", k, a.c.Key(), a.err)
		case *a.c.PlanID != int64(1000+slices.Index(stored, k)):
			t.Errorf("read of %v answered plan %d, another contract's", k, *a.c.PlanID)
		}
	}
}

// A queued read whose caller gives up leaves the queue at once with
// UNAVAILABLE, and the reads queued with it are still answered, in one
// query without it.
func TestKeyReadsACallerThatGivesUpLeavesTheQueue(t *testing.T) {
	t.Parallel()
	stored := []domain.Key{{OutContractCode: "a"}, {OutContractCode: "b"}, {OutContractCode: "c"}, {OutContractCode: "d"}}
	f := newKeyReadsFixture(t, stored)
	ctx := context.Background()
	release, firstDone := f.holdFirst(t, stored[0])
	var wg sync.WaitGroup
	answers := make([]keyAnswer, 2)
	for i, k := range stored[1:3] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i].c, answers[i].err = f.st.byKey.get(ctx, k, f.send)
		}()
	}
	gone, giveUp := context.WithCancel(ctx)
	goneDone := make(chan error, 1)
	go func() {
		_, err := f.st.byKey.get(gone, stored[3], f.send)
		goneDone <- err
	}()
	waitFor(t, "three reads queued", func() bool { return f.queued() == 3 })
	giveUp()
	// Answered while the table is still locked: it waited for nothing more.
	if err := <-goneDone; !domain.IsCode(err, domain.CodeUnavailable) {
		t.Fatalf("the read whose caller gave up answered %v, want UNAVAILABLE", err)
	}
	if n := f.queued(); n != 2 {
		t.Fatalf("%d reads queued after one left, want 2", n)
	}
	release()
	wg.Wait()
	if a := <-firstDone; a.err != nil {
		t.Fatal(a.err)
	}
	if !slices.Equal(f.sizes, []int{1, 2}) {
		t.Fatalf("reads per query %v, want [1 2]", f.sizes)
	}
	for i, a := range answers {
		if a.err != nil || a.c.Key() != stored[1+i] {
			t.Errorf("read of %v answered %v %v", stored[1+i], a.c.Key(), a.err)
		}
	}
}

// No query carries more than maxKeyReadBatch reads: the read that would
// queue the 128th sends the 128 at once, as one more query in flight, and
// the reads after it queue for the next.
func TestKeyReadsBatchesAreBounded(t *testing.T) {
	t.Parallel()
	stored := []domain.Key{{OutContractCode: "first"}}
	for i := range 200 {
		stored = append(stored, domain.Key{OutContractCode: fmt.Sprintf("b%d", i)})
	}
	f := newKeyReadsFixture(t, stored)
	ctx := context.Background()
	release, firstDone := f.holdFirst(t, stored[0])
	var wg sync.WaitGroup
	answers := make([]keyAnswer, 200)
	start := func(from, to int) {
		for i := from; i < to; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				answers[i].c, answers[i].err = f.st.byKey.get(ctx, stored[1+i], f.send)
			}()
		}
	}
	start(0, maxKeyReadBatch-1)
	waitFor(t, "127 reads queued", func() bool { return f.queued() == maxKeyReadBatch-1 })
	start(maxKeyReadBatch-1, 200)
	waitFor(t, "the 128 sent and the rest queued", func() bool {
		f.mu.Lock()
		sent := len(f.sizes)
		f.mu.Unlock()
		return sent == 2 && f.queued() == 200-maxKeyReadBatch
	})
	release()
	wg.Wait()
	if a := <-firstDone; a.err != nil {
		t.Fatal(a.err)
	}
	if want := []int{1, maxKeyReadBatch, 200 - maxKeyReadBatch}; !slices.Equal(f.sizes, want) {
		t.Fatalf("reads per query %v, want %v", f.sizes, want)
	}
	for i, a := range answers {
		if a.err != nil || a.c.Key() != stored[1+i] {
			t.Fatalf("read of %v answered %v %v", stored[1+i], a.c.Key(), a.err)
		}
	}
}
