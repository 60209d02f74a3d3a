package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgcluster"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/store"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// clusterStore opens a store on a throwaway cluster's database, migrating
// it first when migrate is set.
func clusterStore(t *testing.T, url string, migrate bool) (*store.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.OpenOn(t, url, migrate)
	return store.New(pool), pool
}

// feedOrder is every history row's id in the database, in feed order.
func feedOrder(t *testing.T, pool *pgxpool.Pool, where string, args ...any) []int64 {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id FROM contract_events `+where+` ORDER BY timeline, xid, id`, args...)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func idsOf(hs []domain.HistoryEntry) []int64 {
	out := make([]int64, len(hs))
	for i, h := range hs {
		out[i] = h.ID
	}
	return out
}

// A real failover under asynchronous replication: the standby stops
// receiving, the primary writes history rows and a reader follows them,
// the primary dies and the standby is promoted (timeline 2). The new leader
// hands out the lost rows' transaction ids again. The reader whose cursor
// came from the lost rows is told lost, with the position it held, and a
// cursor that resumes before it; from there it sees every row the new
// leader writes, none skipped, though their xids sort below its old
// position. A reader whose cursor is from before the loss misses nothing
// either: the rest of the old timeline, then the new one.
func TestFeedAcrossARealFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	primary := pgcluster.Start(t)
	standby := primary.StartStandby(t)
	st, pool1 := clusterStore(t, primary.URL, true)

	sign := func(st *store.Store, code string) {
		t.Helper()
		if _, _, err := transition(ctx, st, domain.Key{OutContractCode: code}, domain.Change{Event: domain.EventSign, Source: domain.SourceNotification}); err != nil {
			t.Fatal(err)
		}
	}
	terminate := func(st *store.Store, code string) {
		t.Helper()
		if _, _, err := transition(ctx, st, domain.Key{OutContractCode: code}, domain.Change{Event: domain.EventTerminate, Source: domain.SourceNotification}); err != nil {
			t.Fatal(err)
		}
	}
	// Kept: three rows the standby receives.
	for i := range 8 {
		if _, err := st.Create(ctx, contractIn(fmt.Sprintf("fo-%d", i), domain.StateSessionIssued)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		sign(st, fmt.Sprintf("fo-%d", i))
	}
	kept, _ := store.FeedAll(t, st, "", 3, 3)
	// The reader from before the loss holds the cursor after the second
	// kept row.
	first, err := st.Feed(ctx, "", 2)
	if err != nil || len(first.Items) != 2 {
		t.Fatalf("the first two rows: %+v %v", first, err)
	}
	before := first.Next

	var (
		lostCursor string
		lostXID    int64
	)
	var lostRows []domain.HistoryEntry
	primary.FailOver(t, standby, func() {
		for i := 3; i < 6; i++ {
			sign(st, fmt.Sprintf("fo-%d", i))
		}
		var rest []domain.HistoryEntry
		rest, lostCursor = store.FeedAll(t, st, "", 6, 3)
		lostRows = rest[3:]
		if err := pool1.QueryRow(ctx, `SELECT xid FROM contract_events WHERE id = $1`, lostRows[2].ID).Scan(&lostXID); err != nil {
			t.Fatal(err)
		}
	})

	st2, pool2 := clusterStore(t, standby.URL, false)
	var tl int64
	if err := pool2.QueryRow(ctx, `SELECT contractd_timeline()`).Scan(&tl); err != nil || tl != 2 {
		t.Fatalf("the promoted standby's timeline: %d %v, want 2", tl, err)
	}
	if n := len(feedOrder(t, pool2, "")); n != len(kept) {
		t.Fatalf("the new leader holds %d history rows, want the %d kept", n, len(kept))
	}
	// The new leader writes: the lost contracts signed again, and more.
	for i := 3; i < 8; i++ {
		sign(st2, fmt.Sprintf("fo-%d", i))
	}
	terminate(st2, "fo-0")
	after := feedOrder(t, pool2, "WHERE timeline = 2")
	if len(after) != 6 {
		t.Fatalf("%d rows on timeline 2, want 6", len(after))
	}
	// The failure the timeline guards against: some row written after the
	// promotion has a transaction id at or below the lost cursor's row's,
	// so ordering by (xid, id) alone would sort it behind the reader.
	var reused int64
	if err := pool2.QueryRow(ctx, `SELECT count(*) FROM contract_events WHERE timeline = 2 AND xid <= $1`, lostXID).Scan(&reused); err != nil {
		t.Fatal(err)
	}
	if reused == 0 {
		t.Fatalf("no row of the new leader reuses the lost transaction ids: the test does not reproduce the failover it is about")
	}

	// The reader whose cursor came from the lost rows.
	page, err := st2.Feed(ctx, lostCursor, 10)
	if err != nil || page.Lost == nil || len(page.Items) != 0 {
		t.Fatalf("the lost cursor: %+v %v, want lost and no rows", page, err)
	}
	if page.Lost.EventID != lostRows[len(lostRows)-1].EventID || page.Lost.ID != lostRows[len(lostRows)-1].ID || page.Lost.Timeline != 1 {
		t.Fatalf("lost position %+v, want the last lost row's (id %d, event %s, timeline 1)", *page.Lost, lostRows[len(lostRows)-1].ID, lostRows[len(lostRows)-1].EventID)
	}
	resumed, _ := store.FeedAll(t, st2, page.Next, len(after), 3)
	if got := idsOf(resumed); !slices.Equal(got, after) {
		t.Fatalf("after resuming the lost reader saw rows %v, want every row of the new leader in feed order %v", got, after)
	}
	// The reader from before the loss: the last kept row, then the new
	// timeline.
	rest, _ := store.FeedAll(t, st2, before, 1+len(after), 3)
	want := append([]int64{kept[2].ID}, after...)
	if got := idsOf(rest); !slices.Equal(got, want) {
		t.Fatalf("the reader from before the loss saw %v, want %v", got, want)
	}
	for _, r := range append(resumed, rest...) {
		if r.EventID == "" {
			t.Fatalf("row %d has no event id", r.ID)
		}
	}
	for _, l := range lostRows {
		for _, r := range resumed {
			if r.EventID == l.EventID {
				t.Fatalf("event id %s of a lost row is served again", l.EventID)
			}
		}
	}
}

// After a real failover, of two replicas observing the timeline at once,
// exactly one records the new timeline and marks, in the same transaction,
// exactly the contracts the promotion may have left behind WeChat: open
// sessions whatever their age, and contracts not terminated that changed
// within the window before the promotion; not terminated ones, and not
// ones that last changed before the window. The marks are bookkeeping (no
// version, updated_at or history moves). Claiming them shares them between
// replicas, each once, and clears them. Before the failover, the timeline
// the migration recorded heals nothing, and neither does the first
// timeline a database is ever seen on.
func TestObserveTimelineMarksOnceAfterARealFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	primary := pgcluster.Start(t)
	standby := primary.StartStandby(t)
	st, pool1 := clusterStore(t, primary.URL, true)
	const window = time.Hour
	mark := func(now time.Time) func(c *domain.Contract, promotedAt time.Time) error {
		return func(c *domain.Contract, promotedAt time.Time) error {
			c.MarkForHealing(now, promotedAt, window)
			return nil
		}
	}
	seen, err := st.ObserveTimeline(ctx, window, mark(time.Now()))
	if err != nil || seen.Timeline != 1 || seen.New || seen.Promoted {
		t.Fatalf("on the migrated primary: %+v %v, want timeline 1 already recorded", seen, err)
	}

	states := map[string]domain.State{
		"open-old": domain.StateSessionIssued, "open-new": domain.StateSessionIssued,
		"signed-new": domain.StateSigned, "signed-old": domain.StateSigned,
		"terminated-new": domain.StateTerminated, "expired-new": domain.StateExpired,
		"expired-old": domain.StateExpired, "created-new": domain.StateCreated,
	}
	for code, state := range states {
		if _, err := st.Create(ctx, contractIn(code, state)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pool1.Exec(ctx, `UPDATE contracts SET updated_at = now() - interval '3 hours'
		WHERE out_contract_code IN ('open-old', 'signed-old', 'expired-old')`); err != nil {
		t.Fatal(err)
	}
	// A database never seen on any timeline (as one made before
	// timelines were recorded, were its row gone): the first timeline
	// seen heals nothing.
	if _, err := pool1.Exec(ctx, `DELETE FROM timelines`); err != nil {
		t.Fatal(err)
	}
	if seen, err := st.ObserveTimeline(ctx, window, mark(time.Now())); err != nil || !seen.New || seen.Promoted || len(seen.Marked) != 0 {
		t.Fatalf("the first timeline ever seen: %+v %v, want recorded, healing nothing", seen, err)
	}

	primary.FailOver(t, standby, func() {
		if _, err := st.Create(ctx, contractIn("lost-open", domain.StateSessionIssued)); err != nil {
			t.Fatal(err)
		}
	})

	before := contractsByCode(t, clusterPool(t, standby.URL))
	replicas := []*store.Store{}
	for range 2 {
		s, _ := clusterStore(t, standby.URL, false)
		replicas = append(replicas, s)
	}
	now := time.Now().UTC()
	results := make([]store.TimelineSeen, len(replicas))
	var wg sync.WaitGroup
	for i, s := range replicas {
		wg.Go(func() {
			var err error
			if results[i], err = s.ObserveTimeline(ctx, window, mark(now)); err != nil {
				t.Errorf("replica %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	winners := 0
	want := []string{"created-new", "expired-new", "open-new", "open-old", "signed-new"}
	for i, r := range results {
		if r.Timeline != 2 {
			t.Errorf("replica %d saw timeline %d, want 2", i, r.Timeline)
		}
		if !r.New {
			if r.Promoted || len(r.Marked) != 0 {
				t.Errorf("replica %d lost the insert but healed: %+v", i, r)
			}
			continue
		}
		winners++
		var got []string
		for _, p := range r.Marked {
			got = append(got, p.Contract.OutContractCode)
		}
		slices.Sort(got)
		if !r.Promoted || !slices.Equal(got, want) {
			t.Errorf("replica %d marked %v (promoted %v), want %v", i, got, r.Promoted, want)
		}
	}
	if winners != 1 {
		t.Fatalf("%d replicas recorded timeline 2, want exactly 1", winners)
	}
	pool2 := clusterPool(t, standby.URL)
	after := contractsByCode(t, pool2)
	var marked []string
	for code, c := range after {
		b := before[code]
		if c.HealDueAt != nil {
			marked = append(marked, code)
			if !c.HealDueAt.Equal(now.Truncate(time.Microsecond)) {
				t.Errorf("%s due at %s, want %s", code, c.HealDueAt, now)
			}
		}
		if c.Version != b.Version || !c.UpdatedAt.Equal(b.UpdatedAt) {
			t.Errorf("%s: version %d -> %d, updated_at %s -> %s; the mark must be bookkeeping", code, b.Version, c.Version, b.UpdatedAt, c.UpdatedAt)
		}
	}
	slices.Sort(marked)
	if !slices.Equal(marked, want) {
		t.Fatalf("contracts marked in the database: %v, want %v", marked, want)
	}
	var history int
	if err := pool2.QueryRow(ctx, `SELECT count(*) FROM contract_events`).Scan(&history); err != nil || history != 0 {
		t.Fatalf("%d history rows (%v): marking records none", history, err)
	}

	// Both replicas claim: each contract once, and the marks are gone.
	claimed := make([][]string, len(replicas))
	for i, s := range replicas {
		wg.Go(func() {
			ps, err := s.ClaimHealDue(ctx, time.Now(), 2, func(c *domain.Contract) error { c.ClaimHealing(); return nil })
			for err == nil && len(ps) > 0 {
				for _, p := range ps {
					claimed[i] = append(claimed[i], p.Contract.OutContractCode)
				}
				ps, err = s.ClaimHealDue(ctx, time.Now(), 2, func(c *domain.Contract) error { c.ClaimHealing(); return nil })
			}
			if err != nil {
				t.Errorf("replica %d claim: %v", i, err)
			}
		})
	}
	wg.Wait()
	all := append(slices.Clone(claimed[0]), claimed[1]...)
	slices.Sort(all)
	if !slices.Equal(all, want) {
		t.Fatalf("claimed %v and %v, want each of %v once", claimed[0], claimed[1], want)
	}
	for code, c := range contractsByCode(t, pool2) {
		if c.HealDueAt != nil {
			t.Errorf("%s still marked after its claim", code)
		}
	}
	if seen, err := replicas[0].ObserveTimeline(ctx, window, mark(time.Now())); err != nil || seen.New || seen.Promoted {
		t.Fatalf("observing timeline 2 again: %+v %v, want nothing new", seen, err)
	}
}

// clusterPool is a plain pool on url, closed when the test ends.
func clusterPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := store.Connect(context.Background(), url, 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// contractsByCode reads every contract, by out_contract_code.
func contractsByCode(t *testing.T, pool *pgxpool.Pool) map[string]domain.Contract {
	t.Helper()
	st := store.New(pool)
	out := map[string]domain.Contract{}
	rows, err := pool.Query(context.Background(), `SELECT out_contract_code FROM contracts`)
	if err != nil {
		t.Fatal(err)
	}
	codes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range codes {
		c, err := st.Get(context.Background(), domain.Key{OutContractCode: code})
		if err != nil {
			t.Fatal(err)
		}
		out[code] = c
	}
	return out
}
