package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/store"
)

// Reads with a read pool of its own reads that pool's database, and only
// Reads does: the store's List (the API's list) and Get read the primary.
// Two private schemas stand for the primary and a standby that holds
// other rows.
func TestReadsRunOnTheReadPoolAndEverythingElseOnThePrimary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	primary, replica := pgtest.New(t), pgtest.New(t)
	readPool, err := store.Connect(ctx, replica.URL, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(readPool.Close)
	st := store.NewWithOptions(primary.Pool, store.Options{ReadPool: readPool})
	if !st.Reads().Separate() || st.Reads().Pool() != readPool {
		t.Fatal("Reads does not run on the read pool it was given")
	}
	if _, err := st.Create(ctx, contractIn("on-primary", domain.StateCreated)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.New(replica.Pool).Create(ctx, contractIn("on-replica", domain.StateSessionIssued)); err != nil {
		t.Fatal(err)
	}
	codes := func(cs []domain.Contract) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.OutContractCode)
		}
		return out
	}
	got, _, err := st.Reads().List(ctx, domain.ListFilter{})
	if err != nil || len(got) != 1 || got[0].OutContractCode != "on-replica" {
		t.Fatalf("Reads().List: %v %v, want only on-replica", codes(got), err)
	}
	got, _, err = st.List(ctx, domain.ListFilter{})
	if err != nil || len(got) != 1 || got[0].OutContractCode != "on-primary" {
		t.Fatalf("List: %v %v, want only on-primary", codes(got), err)
	}
	now := time.Now()
	ov, err := st.Reads().Overview(ctx, store.OverviewOptions{From: now.Add(-time.Hour), To: now.Add(time.Hour),
		ReconcileMinAge: time.Minute, ReconcileLookBack: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if ov.ByState[domain.StateSessionIssued] != 1 || ov.ByState[domain.StateCreated] != 0 || ov.PreSigns != 1 {
		t.Fatalf("overview by state %v, pre-signs %d: want the replica's one session_issued contract", ov.ByState, ov.PreSigns)
	}
	if _, err := st.Get(ctx, domain.Key{OutContractCode: "on-replica"}); !isCode(err, domain.CodeNotFound) {
		t.Fatalf("Get of the replica's contract: %v, want CONTRACT_NOT_EXIST (Get reads the primary)", err)
	}
}

// Without a read pool, Reads is the primary's pool.
func TestReadsWithoutAReadPoolAreThePrimary(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	st := store.New(db.Pool)
	if st.Reads().Separate() || st.Reads().Pool() != db.Pool {
		t.Fatal("Reads has a pool of its own without a read pool")
	}
	if _, err := st.Create(ctx, contractIn("one", domain.StateCreated)); err != nil {
		t.Fatal(err)
	}
	got, _, err := st.Reads().List(ctx, domain.ListFilter{})
	if err != nil || len(got) != 1 || got[0].OutContractCode != "one" {
		t.Fatalf("Reads().List: %v %v, want the primary's contract", got, err)
	}
}

// The read pool is bounded as the primary is: a table locked on the
// standby past the lock timeout answers IN_PROGRESS rather than waiting.
func TestReadsHonourTheLockTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	primary, replica := pgtest.New(t), pgtest.New(t)
	readPool, err := store.Connect(ctx, replica.URL, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(readPool.Close)
	st := store.NewWithOptions(primary.Pool, store.Options{ReadPool: readPool, LockTimeout: 200 * time.Millisecond, StatementTimeout: time.Minute})
	// Once, so that the read pool's one connection has the statement
	// prepared (describing it would wait outside the bounds).
	if _, _, err := st.Reads().List(ctx, domain.ListFilter{}); err != nil {
		t.Fatal(err)
	}
	release := hold(t, replica, `LOCK TABLE contracts IN ACCESS EXCLUSIVE MODE`)
	defer release()
	_, _, err = st.Reads().List(ctx, domain.ListFilter{})
	if !isCode(err, domain.CodeInProgress) || !errors.Is(err, store.ErrLockTimeout) {
		t.Fatalf("Reads().List of a locked table: %v, want IN_PROGRESS past the lock timeout", err)
	}
}

func isCode(err error, code domain.Code) bool {
	var de *domain.Error
	return errors.As(err, &de) && de.Code == code
}
