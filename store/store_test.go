package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/store"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

func newStore(t *testing.T) (*store.Store, *pgtest.Schema) {
	t.Helper()
	s := pgtest.New(t)
	return store.New(s.Pool), s
}

func i64(v int64) *int64 { return &v }

// contractIn returns a papay contract standing in state st.
func contractIn(code string, st domain.State) domain.Contract {
	c := domain.Contract{OutContractCode: code, Product: domain.ProductPapay, Channel: domain.ChannelApp,
		PlanID: i64(123), UserDisplayName: "Zhang San", State: st}
	if st == domain.StateSessionIssued {
		exp := time.Now().Add(time.Hour)
		c.SessionID, c.SessionExpiresAt = "sess-"+code, &exp
	}
	return c
}

// together runs f(0) .. f(n-1) in n goroutines released at the same
// moment, and returns once all have returned.
func together(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			f(i)
		})
	}
	close(start)
	wg.Wait()
}

func countRows(t *testing.T, s *pgtest.Schema, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := s.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("count %q: %v", sql, err)
	}
	return n
}

func TestCreateGetAndNotFound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newStore(t)
	in := contractIn("c-1", domain.StateCreated)
	got, err := st.Create(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID == 0 || got.Version != 1 || got.State != domain.StateCreated || *got.PlanID != 123 || got.CreatedAt.IsZero() {
		t.Fatalf("created %+v", got)
	}
	again, err := st.Get(ctx, domain.Key{OutContractCode: "c-1"})
	if err != nil || again.ID != got.ID {
		t.Fatalf("get: %+v %v", again, err)
	}
	if _, err := st.Get(ctx, domain.Key{OutContractCode: "nope"}); !domain.IsCode(err, domain.CodeNotFound) {
		t.Fatalf("missing contract: %v", err)
	}
	if _, err := st.Get(ctx, domain.Key{SubMchID: "1000", OutContractCode: "c-1"}); !domain.IsCode(err, domain.CodeNotFound) {
		t.Fatalf("same code, other sub-merchant: %v", err)
	}
}

func TestConcurrentCreateSameKeyStoresOneRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, sch := newStore(t)
	const n = 64
	var (
		mu      sync.Mutex
		created int
		exists  int
		other   []error
	)
	together(n, func(int) {
		_, err := st.Create(ctx, contractIn("same", domain.StateCreated))
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			created++
		case domain.IsCode(err, domain.CodeExists):
			exists++
		default:
			other = append(other, err)
		}
	})
	if created != 1 || exists != n-1 || len(other) != 0 {
		t.Fatalf("created %d, exists %d, other %v", created, exists, other)
	}
	if got := countRows(t, sch, `SELECT count(*) FROM contracts WHERE out_contract_code = 'same'`); got != 1 {
		t.Fatalf("%d rows", got)
	}
}

func TestConcurrentSignAppliesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, sch := newStore(t)
	if _, err := st.Create(ctx, contractIn("race", domain.StateSessionIssued)); err != nil {
		t.Fatal(err)
	}
	const n = 64
	var (
		mu      sync.Mutex
		applied int
		repeats int
	)
	together(n, func(i int) {
		_, d, err := transition(ctx, st, domain.Key{OutContractCode: "race"}, domain.Change{
			Event: domain.EventSign, Source: domain.SourceNotification, ContractID: "wx-race", OpenID: fmt.Sprint("o-", i)})
		if err != nil {
			t.Errorf("sign %d: %v", i, err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch d.Outcome {
		case domain.OutcomeApply:
			applied++
		case domain.OutcomeRepeat:
			repeats++
		}
	})
	if applied != 1 || repeats != n-1 {
		t.Fatalf("applied %d, repeats %d", applied, repeats)
	}
	c, err := st.Get(ctx, domain.Key{OutContractCode: "race"})
	if err != nil || c.State != domain.StateSigned || c.ContractID != "wx-race" || c.Version != 2 {
		t.Fatalf("after race: %+v %v", c, err)
	}
	if got := countRows(t, sch, `SELECT count(*) FROM contract_events`); got != 1 {
		t.Fatalf("%d history rows, want 1", got)
	}
}

func TestTerminatedIsFinalAndStaleSignIsRecordedIgnored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, sch := newStore(t)
	key := domain.Key{OutContractCode: "t-1"}
	if _, err := st.Create(ctx, contractIn("t-1", domain.StateSigned)); err != nil {
		t.Fatal(err)
	}
	if _, d, err := transition(ctx, st, key, domain.Change{Event: domain.EventTerminate, Source: domain.SourceNotification, TerminationMode: "USER"}); err != nil || d.Outcome != domain.OutcomeApply {
		t.Fatalf("terminate: %+v %v", d, err)
	}
	c, d, err := transition(ctx, st, key, domain.Change{Event: domain.EventSign, Source: domain.SourceNotification,
		Details: map[string]any{"notification_id": "n-stale"}})
	if err != nil || d.Outcome != domain.OutcomeIgnore || c.State != domain.StateTerminated {
		t.Fatalf("stale sign: %+v %+v %v", c, d, err)
	}
	hist, err := st.History(ctx, key)
	if err != nil || len(hist) != 2 {
		t.Fatalf("history %+v %v", hist, err)
	}
	last := hist[1]
	if !last.Ignored || last.Event != domain.EventSign || last.FromState != domain.StateTerminated || last.ToState != domain.StateTerminated {
		t.Fatalf("ignored row %+v", last)
	}
	// A repeated terminate records nothing.
	if _, d, err := transition(ctx, st, key, domain.Change{Event: domain.EventTerminate, Source: domain.SourceOps}); err != nil || d.Outcome != domain.OutcomeRepeat {
		t.Fatalf("repeat terminate: %+v %v", d, err)
	}
	if got := countRows(t, sch, `SELECT count(*) FROM contract_events`); got != 2 {
		t.Fatalf("%d history rows", got)
	}
}

// edges lists api.md's lifecycle table by hand: every (from, event) pair it allows.
var edges = map[domain.State][]domain.Event{
	domain.StateCreated:       {domain.EventIssueSession, domain.EventSign, domain.EventTerminate},
	domain.StateSessionIssued: {domain.EventSign, domain.EventExpire, domain.EventTerminate},
	domain.StateSigned:        {domain.EventTerminate},
	domain.StateExpired:       {domain.EventIssueSession, domain.EventSign, domain.EventTerminate},
	domain.StateTerminated:    {},
}

var targets = map[domain.Event]domain.State{
	domain.EventIssueSession: domain.StateSessionIssued, domain.EventSign: domain.StateSigned,
	domain.EventExpire: domain.StateExpired, domain.EventTerminate: domain.StateTerminated,
}

func TestEveryPairInTheStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, sch := newStore(t)
	for _, from := range domain.States {
		for _, ev := range domain.Events {
			code := fmt.Sprintf("%s-%s", from, ev)
			t.Run(code, func(t *testing.T) {
				in, err := st.Create(ctx, contractIn(code, from))
				if err != nil {
					t.Fatal(err)
				}
				key := in.Key()
				ch := domain.Change{Event: ev, Source: domain.SourceOps}
				if ev == domain.EventIssueSession {
					ch.Session = &domain.Session{ID: "s-new", ExpiresAt: time.Now().Add(time.Hour), Launch: []byte(`{"type":"app_sdk"}`)}
				}
				c, d, err := transition(ctx, st, key, ch)
				rows := countRows(t, sch, `SELECT count(*) FROM contract_events WHERE out_contract_code = $1`, code)
				allowed := false
				for _, e := range edges[from] {
					allowed = allowed || e == ev
				}
				repeat := targets[ev] == from && ev != domain.EventIssueSession
				ignored := from == domain.StateTerminated && ev == domain.EventSign
				after, _ := st.Get(ctx, key)
				switch {
				case allowed:
					if err != nil || d.Outcome != domain.OutcomeApply || c.State != targets[ev] || after.State != targets[ev] || rows != 1 || after.Version != in.Version+1 {
						t.Fatalf("edge %s: %+v %v rows=%d", code, d, err, rows)
					}
				case repeat:
					if err != nil || d.Outcome != domain.OutcomeRepeat || after.State != from || rows != 0 || after.Version != in.Version {
						t.Fatalf("repeat %s: %+v %v rows=%d", code, d, err, rows)
					}
				case ignored:
					if err != nil || d.Outcome != domain.OutcomeIgnore || after.State != from || rows != 1 {
						t.Fatalf("ignored %s: %+v %v rows=%d", code, d, err, rows)
					}
				default:
					if !domain.IsCode(err, domain.CodeInvalidState) || after.State != from || rows != 0 || after.Version != in.Version {
						t.Fatalf("refused pair %s: %+v %v rows=%d state=%s", code, d, err, rows, after.State)
					}
				}
			})
		}
	}
}

func TestTransitionUnknownContract(t *testing.T) {
	t.Parallel()
	st, _ := newStore(t)
	_, _, err := transition(context.Background(), st, domain.Key{OutContractCode: "ghost"}, domain.Change{Event: domain.EventSign})
	if !domain.IsCode(err, domain.CodeNotFound) {
		t.Fatalf("got %v", err)
	}
}

func TestHistoryIsAppendOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, sch := newStore(t)
	if _, err := st.Create(ctx, contractIn("h", domain.StateSessionIssued)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := transition(ctx, st, domain.Key{OutContractCode: "h"}, domain.Change{Event: domain.EventExpire, Source: domain.SourceSweeper}); err != nil {
		t.Fatal(err)
	}
	if _, err := sch.Pool.Exec(ctx, `UPDATE contract_events SET event = 'sign'`); err == nil {
		t.Fatal("history row was updated")
	}
	if _, err := sch.Pool.Exec(ctx, `DELETE FROM contract_events`); err == nil {
		t.Fatal("history row was deleted")
	}
}

func TestListPagesAndFilters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newStore(t)
	for i := 0; i < 7; i++ {
		st8 := domain.StateCreated
		if i%2 == 0 {
			st8 = domain.StateSigned
		}
		if _, err := st.Create(ctx, contractIn(fmt.Sprint("l-", i), st8)); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("cursor never ends")
		}
		cs, next, err := st.List(ctx, domain.ListFilter{Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			seen = append(seen, c.OutContractCode)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if len(seen) != 7 || seen[0] != "l-0" || seen[6] != "l-6" {
		t.Fatalf("pages gave %v", seen)
	}
	signed, _, err := st.List(ctx, domain.ListFilter{State: domain.StateSigned})
	if err != nil || len(signed) != 4 {
		t.Fatalf("signed filter: %d %v", len(signed), err)
	}
	if _, _, err := st.List(ctx, domain.ListFilter{Cursor: "garbage!"}); !domain.IsCode(err, domain.CodeParamError) {
		t.Fatalf("bad cursor: %v", err)
	}
}

func TestFeedFollowsEveryContract(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newStore(t)
	for _, code := range []string{"f-1", "f-2", "f-3"} {
		if _, err := st.Create(ctx, contractIn(code, domain.StateSessionIssued)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := transition(ctx, st, domain.Key{OutContractCode: code}, domain.Change{Event: domain.EventSign, Source: domain.SourceNotification}); err != nil {
			t.Fatal(err)
		}
	}
	// A row is served once every transaction older than its own has
	// ended, anywhere in the cluster (other tests run beside this one).
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		all, err := st.Feed(ctx, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(all.Items) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the feed shows %d of 3 rows after a minute", len(all.Items))
		}
	}
	first, err := st.Feed(ctx, "", 2)
	if err != nil || len(first.Items) != 2 || first.Items[0].OutContractCode != "f-1" || first.Next == "" || first.Lost != nil {
		t.Fatalf("feed page 1: %+v %v", first, err)
	}
	rest, err := st.Feed(ctx, first.Next, 10)
	if err != nil || len(rest.Items) != 1 || rest.Items[0].OutContractCode != "f-3" || rest.Lost != nil {
		t.Fatalf("feed page 2: %+v %v", rest, err)
	}
	empty, err := st.Feed(ctx, rest.Next, 10)
	if err != nil || len(empty.Items) != 0 || empty.Next != rest.Next || empty.Lost != nil {
		t.Fatalf("feed past the end: %+v (want cursor %q) %v", empty, rest.Next, err)
	}
	for _, bad := range []string{"12", "not-a-cursor", "ZjE6LTE6MA"} {
		if _, err := st.Feed(ctx, bad, 10); !domain.IsCode(err, domain.CodeParamError) {
			t.Errorf("cursor %q: %v, want PARAM_ERROR", bad, err)
		}
	}
}

func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Nothing listens on port 1 of the loopback address.
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	_, err = store.New(pool).Get(ctx, domain.Key{OutContractCode: "x"})
	if !domain.IsCode(err, domain.CodeUnavailable) {
		t.Fatalf("got %v, want UNAVAILABLE", err)
	}
	if _, err := store.Connect(ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable", 4); err == nil {
		t.Fatal("Connect to nothing succeeded")
	}
}

// TestFeedNeverSkipsUnderConcurrentWriters follows the feed with several
// readers while 64 writers commit transitions, round after round, and checks
// that every reader sees every history row exactly once and in the feed's
// one order: the order of (timeline, transaction id, id) in the table once all is
// written. Without the snapshot horizon of Store.Feed, a reader moves past
// a row whose transaction has not committed yet and never sees it.
func TestFeedNeverSkipsUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, sch := newStore(t)
	const writers, perWriter, rounds, readers = 64, 2, 4, 3
	total := writers * perWriter * rounds * 2 // a sign and a terminate per contract

	type seenRow struct {
		id   int64
		code string
		ev   domain.Event
	}
	var (
		wgReaders sync.WaitGroup
		seen      [readers][]seenRow
		written   = make(chan struct{})
	)
	for r := 0; r < readers; r++ {
		wgReaders.Add(1)
		go func(r int) {
			defer wgReaders.Done()
			cursor, limit := "", 3+4*r
			// A row is served once every transaction older than its own
			// has ended, anywhere in the cluster (other tests run beside
			// this one), so after the writers finish the reader goes on
			// until it has them all, or a generous deadline passes.
			var deadline time.Time
			for len(seen[r]) < total {
				select {
				case <-written:
					if deadline.IsZero() {
						deadline = time.Now().Add(time.Minute)
					}
				default:
				}
				if !deadline.IsZero() && time.Now().After(deadline) {
					return
				}
				page, err := st.Feed(ctx, cursor, limit)
				if err != nil || page.Lost != nil {
					t.Error(err, page.Lost)
					return
				}
				for _, h := range page.Items {
					seen[r] = append(seen[r], seenRow{h.ID, h.OutContractCode, h.Event})
				}
				cursor = page.Next
				if len(page.Items) == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}(r)
	}
	for round := 0; round < rounds; round++ {
		code := func(w, i int) string { return fmt.Sprintf("feed-%d-%d-%d", round, w, i) }
		for w := 0; w < writers; w++ {
			for i := 0; i < perWriter; i++ {
				if _, err := st.Create(ctx, contractIn(code(w, i), domain.StateSigned)); err != nil {
					t.Fatal(err)
				}
			}
		}
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < perWriter; i++ {
					key := domain.Key{OutContractCode: code(w, i)}
					for _, ch := range []domain.Change{
						{Event: domain.EventTerminate, Source: domain.SourceNotification},
						{Event: domain.EventSign, Source: domain.SourceNotification},
					} {
						if _, _, err := transition(ctx, st, key, ch); err != nil {
							t.Error(err)
							return
						}
					}
				}
			}(w)
		}
		wg.Wait()
	}
	close(written)
	wgReaders.Wait()
	if t.Failed() {
		return
	}

	// The one order every reader must have seen.
	rows, err := sch.Pool.Query(ctx, `SELECT id FROM contract_events ORDER BY timeline, xid, id`)
	if err != nil {
		t.Fatal(err)
	}
	want, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if len(want) != total {
		t.Fatalf("the table has %d history rows, want %d", len(want), total)
	}
	for r := range seen {
		if len(seen[r]) != total {
			t.Errorf("reader %d saw %d rows, want %d", r, len(seen[r]), total)
			continue
		}
		firstEvent := map[string]domain.Event{}
		for i, h := range seen[r] {
			if h.id != want[i] {
				t.Errorf("reader %d: row %d of the feed is id %d, want %d", r, i, h.id, want[i])
				break
			}
			if _, ok := firstEvent[h.code]; !ok {
				firstEvent[h.code] = h.ev
				if h.ev != domain.EventTerminate {
					t.Errorf("reader %d saw %s's %s before its terminate", r, h.code, h.ev)
				}
			}
		}
	}
}

// transition applies one change through the store's Update, the way every
// flow changes a contract: the domain decides under the row lock.
func transition(ctx context.Context, st *store.Store, key domain.Key, ch domain.Change) (domain.Contract, domain.Decision, error) {
	p, err := st.Update(ctx, key, func(c *domain.Contract) error {
		_, err := c.Apply(ctx, ch, time.Now())
		return err
	})
	return p.Contract, p.Last(), err
}

// The overview counts the period's rejected notifications by reason, the
// most frequent first; repeated deliveries of one notification count once.
func TestOverviewCountsRejectedNotificationsByReason(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newStore(t)
	for i, reason := range []string{"resource.openid must not contain NUL", "resource.out_contract_code is reserved",
		"resource.openid must not contain NUL", "resource.openid must not contain NUL"} {
		n := store.Notification{NotificationID: fmt.Sprintf("rej-%d", i), EventType: "PAPAY.SIGN", Resource: []byte(`{}`)}
		for range 2 {
			if _, err := st.RejectNotification(ctx, n, reason); err != nil {
				t.Fatal(err)
			}
		}
	}
	now := time.Now()
	ov, err := st.Reads().Overview(ctx, store.OverviewOptions{From: now.Add(-time.Hour), To: now.Add(time.Hour),
		ReconcileMinAge: time.Minute, ReconcileLookBack: time.Hour, RecentErrors: 5})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.ReasonCount{{Reason: "resource.openid must not contain NUL", Count: 3}, {Reason: "resource.out_contract_code is reserved", Count: 1}}
	if !slices.Equal(ov.Rejected, want) {
		t.Fatalf("rejected by reason %+v, want %+v", ov.Rejected, want)
	}
	if ov.Notifications["rejected"] != 4 {
		t.Fatalf("notifications by outcome %v, want 4 rejected", ov.Notifications)
	}
}

// TestLostOrDuplicatePreparedStatementIsUnavailableNamingTheFix makes a
// real Postgres session answer what a pooler in transaction mode makes it
// answer when pgx's named statements meet another server session: the
// statement pgx cached is gone ("does not exist", 26000), or a statement
// pgx is preparing is already there ("already exists", 42P05). Both are
// UNAVAILABLE, and the error (which the request's log line carries) names
// default_query_exec_mode=cache_describe as the fix.
func TestLostOrDuplicatePreparedStatementIsUnavailableNamingTheFix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		code  string
		spoil func(ctx context.Context, conn *pgx.Conn, stmt string) error
	}{
		{"DoesNotExist", "26000", func(ctx context.Context, conn *pgx.Conn, _ string) error {
			// The server forgets; pgx's cache still has it.
			_, err := conn.Exec(ctx, "DEALLOCATE ALL", pgx.QueryExecModeSimpleProtocol)
			return err
		}},
		{"AlreadyExists", "42P05", func(ctx context.Context, conn *pgx.Conn, stmt string) error {
			// pgx forgets; the server has a statement of that name.
			if err := conn.DeallocateAll(ctx); err != nil {
				return err
			}
			_, err := conn.Exec(ctx, "PREPARE "+stmt+" AS SELECT 1", pgx.QueryExecModeSimpleProtocol)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			db := pgtest.New(t)
			pool, err := store.Connect(ctx, db.URL, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			if got := store.ExecMode(pool); got != "cache_statement" {
				t.Fatalf("exec mode %q, want cache_statement (the default)", got)
			}
			st := store.New(pool)
			key := domain.Key{OutContractCode: "ps-1"}
			if _, err := st.Get(ctx, key); !domain.IsCode(err, domain.CodeNotFound) {
				t.Fatalf("first get: %v, want CONTRACT_NOT_EXIST", err)
			}
			conn, err := pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var stmt string
			if err := conn.QueryRow(ctx, `SELECT name FROM pg_prepared_statements WHERE statement LIKE '%FROM contracts%'`,
				pgx.QueryExecModeSimpleProtocol).Scan(&stmt); err != nil {
				t.Fatalf("the get's named statement on the session: %v", err)
			}
			if err := tc.spoil(ctx, conn.Conn(), stmt); err != nil {
				t.Fatal(err)
			}
			conn.Release()
			_, err = st.Get(ctx, key)
			var pg *pgconn.PgError
			if !errors.As(err, &pg) || pg.Code != tc.code {
				t.Fatalf("get after the session changed: %v, want SQLSTATE %s in the chain", err, tc.code)
			}
			if !domain.IsCode(err, domain.CodeUnavailable) {
				t.Fatalf("got %v, want UNAVAILABLE", err)
			}
			if !strings.Contains(err.Error(), "default_query_exec_mode=cache_describe") {
				t.Fatalf("error %q does not name default_query_exec_mode=cache_describe", err)
			}
		})
	}
}

// Reads by key are coalesced under load (keyReads): 32 callers at once,
// each creating contracts and reading them straight back and reading the
// others' at random, every answer is the contract asked for, and a
// contract whose creation returned is always found (a read is never
// answered by a query sent before it arrived).
func TestConcurrentGetsAnswerEachCallerItsOwnContract(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db := newStore(t)
	const callers, each = 32, 25
	code := func(w, i int) string { return fmt.Sprintf("g-%d-%d", w, i) }
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for w := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				c := contractIn(code(w, i), domain.StateCreated)
				plan := int64(w*1000 + i)
				c.PlanID = &plan
				if _, err := st.Create(ctx, c); err != nil {
					errs <- err
					return
				}
				for _, k := range []struct{ w, i int }{{w, i}, {(w + i) % callers, i / 2}} {
					got, err := st.Get(ctx, domain.Key{OutContractCode: code(k.w, k.i)})
					if k.w == w || (err == nil) {
						if err != nil {
							errs <- fmt.Errorf("read back %s: %w", code(k.w, k.i), err)
							return
						}
						if got.OutContractCode != code(k.w, k.i) || *got.PlanID != int64(k.w*1000+k.i) {
							errs <- fmt.Errorf("read of %s answered %s plan %d", code(k.w, k.i), got.OutContractCode, *got.PlanID)
							return
						}
					} else if !domain.IsCode(err, domain.CodeNotFound) {
						errs <- fmt.Errorf("read of %s (maybe not created yet): %w", code(k.w, k.i), err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM contracts`); n != callers*each {
		t.Fatalf("%d contracts, want %d", n, callers*each)
	}
}
