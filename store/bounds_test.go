package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/store"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// boundedStore is a store on a pool of its own of maxConns connections in
// a fresh schema, bounded by o.
func boundedStore(t *testing.T, maxConns int, o store.Options) (*store.Store, *pgxpool.Pool, *pgtest.Schema) {
	t.Helper()
	db := pgtest.New(t)
	pool, err := store.Connect(context.Background(), db.URL, maxConns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return store.NewWithOptions(pool, o), pool, db
}

// hold runs sql (a lock) in a transaction of the schema's own pool, as
// another replica would, until the returned release is called.
func hold(t *testing.T, db *pgtest.Schema, sql string, args ...any) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, sql, args...); err != nil {
		_ = tx.Rollback(ctx)
		t.Fatalf("%s: %v", sql, err)
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback(ctx) }) }
	t.Cleanup(release)
	return release
}

// signChange is WeChat reporting a contract signed.
func signChange() domain.Change {
	return domain.Change{Event: domain.EventSign, Source: domain.SourceReconcile, ContractID: "wx-1", OpenID: "o-1",
		OccurredAt: time.Now(), Details: map[string]any{}}
}

func signIt(c *domain.Contract) error {
	_, err := c.Apply(context.Background(), signChange(), time.Now())
	return err
}

// watchAcquired samples how many of pool's connections are in use until
// stop is closed, and returns the most seen.
func watchAcquired(pool *pgxpool.Pool, stop <-chan struct{}) <-chan int32 {
	most := make(chan int32, 1)
	go func() {
		var m int32
		for {
			m = max(m, pool.Stat().AcquiredConns())
			select {
			case <-stop:
				most <- m
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return most
}

// A row locked elsewhere past the lock timeout: every Update of it is
// IN_PROGRESS with a Retry-After (not a 500, not an endless wait), 40 of
// them at once take one connection of the pool between them, other
// contracts are read and written meanwhile, and a notification for the
// locked contract writes nothing, not even its inbox row.
func TestRowLockedPastTheLockTimeoutIsInProgressAndWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, pool, db := boundedStore(t, 4, store.Options{LockTimeout: 300 * time.Millisecond, StatementTimeout: 30 * time.Second})
	for _, code := range []string{"locked", "free"} {
		if _, err := st.Create(ctx, contractIn(code, domain.StateSessionIssued)); err != nil {
			t.Fatal(err)
		}
	}
	release := hold(t, db, `SELECT 1 FROM contracts WHERE out_contract_code = 'locked' FOR UPDATE`)

	stop := make(chan struct{})
	most := watchAcquired(pool, stop)
	var others atomic.Int32
	othersDone := make(chan error, 1)
	go func() {
		// Other contracts' work goes on while the 40 wait.
		for i := 0; ; i++ {
			select {
			case <-stop:
				othersDone <- nil
				return
			default:
			}
			if _, err := st.Get(ctx, domain.Key{OutContractCode: "free"}); err != nil {
				othersDone <- err
				return
			}
			if _, err := st.Create(ctx, contractIn("new-"+time.Now().Format("150405.000000000"), domain.StateCreated)); err != nil {
				othersDone <- err
				return
			}
			others.Add(1)
		}
	}()
	const callers = 40
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = st.Update(ctx, domain.Key{OutContractCode: "locked"}, signIt)
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-othersDone; err != nil {
		t.Fatalf("other contracts while one was locked: %v", err)
	}
	if m := <-most; m > 3 {
		t.Errorf("%d of 4 connections in use at once: callers of one locked row took more than one", m)
	}
	if others.Load() == 0 {
		t.Error("no other contract was served while the row was locked")
	}
	for i, err := range errs {
		var de *domain.Error
		if !errors.As(err, &de) || de.Code != domain.CodeInProgress || de.RetryAfter <= 0 || !errors.Is(err, store.ErrLockTimeout) {
			t.Fatalf("update %d of a locked row: %v, want IN_PROGRESS with RetryAfter", i, err)
		}
	}

	// A notification about the locked contract: nothing written.
	r, err := st.ReceiveNotification(ctx, store.Notification{NotificationID: "n-locked", EventType: "PAPAY.SIGN",
		OutContractCode: "locked", CreateTime: time.Now(), Resource: json.RawMessage(`{}`)},
		contractIn("locked", domain.StateCreated), func(c *domain.Contract) (string, error) { return "applied", signIt(c) })
	if !domain.IsCode(err, domain.CodeInProgress) {
		t.Fatalf("notification for a locked row: first %v, %v; want IN_PROGRESS", r.First, err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM wechat_notifications`); n != 0 {
		t.Fatalf("%d inbox rows after a notification refused under a lock", n)
	}
	if n := countRows(t, db, `SELECT count(*) FROM contract_events WHERE out_contract_code = 'locked' AND event = 'sign'`); n != 0 {
		t.Fatalf("%d sign rows written under the lock", n)
	}

	release()
	p, err := st.Update(ctx, domain.Key{OutContractCode: "locked"}, signIt)
	if err != nil || p.Contract.State != domain.StateSigned {
		t.Fatalf("update once the row is free: %v %v", p.Contract.State, err)
	}
}

// A statement past the statement timeout is UNAVAILABLE (Postgres's
// 57014, or the read's own deadline), and its transaction writes nothing.
func TestStatementPastTheTimeoutIsUnavailableAndWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The lock timeout is longer: the wait for the lock is one statement
	// that runs past the statement timeout.
	// One connection: the reads below are described on it (pgx does that
	// once per connection, before the batch's bounds apply) before the
	// table is locked.
	st, _, db := boundedStore(t, 1, store.Options{LockTimeout: time.Minute, StatementTimeout: 300 * time.Millisecond})
	if _, err := st.Create(ctx, contractIn("slow", domain.StateSessionIssued)); err != nil {
		t.Fatal(err)
	}
	key := domain.Key{OutContractCode: "slow"}
	if _, err := st.Feed(ctx, "", 10); err != nil {
		t.Fatal(err)
	}
	if _, err := st.History(ctx, key); err != nil {
		t.Fatal(err)
	}
	is57014 := func(err error) bool {
		var pg *pgconn.PgError
		return errors.As(err, &pg) && pg.Code == "57014"
	}

	t.Run("a transaction: the inbox row written before the slow statement is not kept", func(t *testing.T) {
		release := hold(t, db, `SELECT 1 FROM contracts WHERE out_contract_code = 'slow' FOR UPDATE`)
		defer release()
		_, err := st.ReceiveNotification(ctx, store.Notification{NotificationID: "n-slow", EventType: "PAPAY.SIGN",
			OutContractCode: "slow", CreateTime: time.Now(), Resource: json.RawMessage(`{}`)},
			contractIn("slow", domain.StateCreated), func(c *domain.Contract) (string, error) { return "applied", signIt(c) })
		if !domain.IsCode(err, domain.CodeUnavailable) || !is57014(err) {
			t.Fatalf("notification whose statement ran past the timeout: %v, want UNAVAILABLE from 57014", err)
		}
		if n := countRows(t, db, `SELECT count(*) FROM wechat_notifications`); n != 0 {
			t.Fatalf("%d inbox rows kept from a transaction that timed out", n)
		}
		if _, err := st.Update(ctx, key, signIt); !domain.IsCode(err, domain.CodeUnavailable) || !is57014(err) {
			t.Fatalf("update whose lock wait ran past the statement timeout: %v", err)
		}
		if n := countRows(t, db, `SELECT count(*) FROM contract_events WHERE event = 'sign'`); n != 0 {
			t.Fatalf("%d sign rows written", n)
		}
	})

	t.Run("reads without a transaction", func(t *testing.T) {
		// A migration's ACCESS EXCLUSIVE lock stops every read of the table.
		release := hold(t, db, `LOCK TABLE contract_events IN ACCESS EXCLUSIVE MODE`)
		defer release()
		// A heavy read: bounded on the server (set_config in its batch).
		if _, err := st.Feed(ctx, "", 10); !domain.IsCode(err, domain.CodeUnavailable) || !is57014(err) {
			t.Fatalf("feed past the statement timeout: %v, want UNAVAILABLE from 57014", err)
		}
		// A single contract's read: bounded by its deadline.
		if _, err := st.History(ctx, key); !domain.IsCode(err, domain.CodeUnavailable) {
			t.Fatalf("history past the statement timeout: %v, want UNAVAILABLE", err)
		}
	})

	// The bounds lasted only for their transactions: with nothing held,
	// everything works again on the same connections.
	if _, err := st.Update(ctx, key, signIt); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Feed(ctx, "", 10); err != nil {
		t.Fatal(err)
	}
}

// The bounds are the transaction's own (SET LOCAL): nothing is left on the
// session for the next user of the connection, as pgbouncer in
// transaction mode requires.
func TestBoundsLeaveNothingOnTheSession(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, pool, _ := boundedStore(t, 1, store.Options{LockTimeout: 1234 * time.Millisecond, StatementTimeout: 4321 * time.Millisecond})
	if _, err := st.Create(ctx, contractIn("s-1", domain.StateCreated)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Update(ctx, domain.Key{OutContractCode: "s-1"}, func(c *domain.Contract) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.List(ctx, domain.ListFilter{}); err != nil {
		t.Fatal(err)
	}
	var lock, statement string
	if err := pool.QueryRow(ctx, `SELECT current_setting('lock_timeout'), current_setting('statement_timeout')`).Scan(&lock, &statement); err != nil {
		t.Fatal(err)
	}
	if lock != "0" || statement != "0" {
		t.Fatalf("session keeps lock_timeout %q statement_timeout %q after the store's work, want 0 0", lock, statement)
	}
}

// Readers of many rows hold at most HeavyReaders connections: with ten
// feeds stuck behind a lock, a single contract is still read and written
// on the connections left.
func TestHeavyReadersLeaveConnectionsForOneContract(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, pool, db := boundedStore(t, 4, store.Options{StatementTimeout: time.Minute})
	if _, err := st.Create(ctx, contractIn("one", domain.StateSessionIssued)); err != nil {
		t.Fatal(err)
	}
	release := hold(t, db, `LOCK TABLE contract_events IN ACCESS EXCLUSIVE MODE`)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.Feed(ctx, "", 10)
			errs <- err
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for pool.Stat().AcquiredConns() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the feeds never took their two connections")
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop := make(chan struct{})
	most := watchAcquired(pool, stop)
	// Single-contract work: a read, and a write (whose history rows wait
	// for the same table lock, so it only locks the row here).
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	for range 20 {
		if _, err := st.Get(rctx, domain.Key{OutContractCode: "one"}); err != nil {
			t.Fatalf("a single contract read while the feeds wait: %v", err)
		}
	}
	cancel()
	// A heavy reader whose caller gives up while waiting for a place.
	gone, giveUp := context.WithTimeout(ctx, 50*time.Millisecond)
	if _, _, err := st.List(gone, domain.ListFilter{}); !domain.IsCode(err, domain.CodeUnavailable) {
		t.Fatalf("a list whose caller left while waiting for a place: %v, want UNAVAILABLE", err)
	}
	giveUp()
	close(stop)
	if m := <-most; m > 3 {
		t.Fatalf("%d connections in use with the feeds bounded to 2 and one single read", m)
	}
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("feed once the table is free: %v", err)
		}
	}
}

// A store given no bounds (Options' zero value: config owns the service's
// defaults, and the store applies only what it is given) waits on a locked
// row for as long as the caller's context lasts: the wait is seen in
// pg_stat_activity past any default bound, and it ends when the caller gives
// up, not with a lock timeout's IN_PROGRESS.
func TestNoBoundsWaitAsLongAsTheCaller(t *testing.T) {
	t.Parallel()
	st, _, db := boundedStore(t, 2, store.Options{})
	ctx := context.Background()
	if _, err := st.Create(ctx, contractIn("unbounded", domain.StateSessionIssued)); err != nil {
		t.Fatal(err)
	}
	release := hold(t, db, `SELECT 1 FROM contracts WHERE out_contract_code = 'unbounded' FOR UPDATE`)
	defer release()
	callCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := st.Update(callCtx, domain.Key{OutContractCode: "unbounded"}, signIt)
		done <- err
	}()
	// The wait is seen, and seen to outlast config's default lock timeout
	// (2 s), which a store that kept a default of its own would apply.
	deadline := time.Now().Add(time.Minute) // only catches a stall
	for countRows(t, db, `SELECT count(*) FROM pg_stat_activity
		WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%' AND query NOT LIKE '%pg_stat_activity%'
		AND now() - query_start > interval '3 seconds'`) == 0 {
		select {
		case err := <-done:
			t.Fatalf("the update ended before it waited on the row: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the update never waited on the locked row")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	err := <-done
	if err == nil || domain.IsCode(err, domain.CodeInProgress) {
		t.Fatalf("an unbounded wait ended by its caller answered %v, want the caller's cancellation (not IN_PROGRESS)", err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM contract_events WHERE event = 'sign'`); n != 0 {
		t.Fatalf("%d sign rows written by a cancelled update", n)
	}
}
