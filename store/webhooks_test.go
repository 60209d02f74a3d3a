package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/store"
)

// newUUID is a fresh endpoint id.
func newUUID(t *testing.T, db *pgtest.Schema) string {
	t.Helper()
	var id string
	if err := db.Pool.QueryRow(context.Background(), `SELECT gen_random_uuid()::text`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// newEndpoint stores an endpoint at the feed's tail.
func newEndpoint(t *testing.T, st *store.Store, db *pgtest.Schema) domain.Endpoint {
	t.Helper()
	e, err := st.CreateEndpoint(context.Background(), domain.Endpoint{ID: newUUID(t, db), URL: "https://app.example/hook",
		Description: "app", CreatedBy: "ops:test", SecretSealed: []byte("sealed")})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// signMany stores n contracts prefix-i and signs each: one history row
// apiece, in that order.
func signMany(t *testing.T, st *store.Store, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		c := contractIn(fmt.Sprintf("%s-%d", prefix, i), domain.StateSessionIssued)
		if _, err := st.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Update(ctx, c.Key(), func(c *domain.Contract) error {
			_, err := c.Apply(ctx, domain.Change{Event: domain.EventSign, Source: domain.SourceNotification,
				ContractID: "wx-" + c.OutContractCode, OpenID: "o-1", Details: map[string]any{}}, time.Now())
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
}

func eventIDsOf(hs []domain.HistoryEntry) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.EventID
	}
	return out
}

// A new endpoint's cursor is the feed's tail: "" on an empty feed, then
// exactly the cursor GET /v1/events hands a reader that has read
// everything. A transaction that took its id before the endpoint was
// created and writes its row only afterwards is not skipped, although
// rows with larger ids were committed before the endpoint: the cursor is
// the tail under the horizon, never a maximum over ids.
func TestCreateEndpointStartsAtTheFeedsTail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db := newStore(t)
	if e := newEndpoint(t, st, db); e.Cursor != "" || e.LagEvents != 0 || e.LagSeconds != 0 || e.LastAttempt != nil {
		t.Fatalf("on an empty feed: %+v, want cursor \"\" and no lag", e)
	}
	signMany(t, st, "old", 3)
	_, tail := store.FeedAll(t, st, "", 3, 100)
	// Wait until the whole feed is served (nothing else of this schema
	// is running), then an endpoint starts where a reader is.
	var e domain.Endpoint
	store.WaitFor(t, "the endpoint to start at the tail", func() bool {
		e = newEndpoint(t, st, db)
		return e.Cursor == tail
	})

	// A writer that took its transaction id first, and writes its row
	// after the endpoint is created.
	late, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx)
	if _, err := late.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	signMany(t, st, "new", 2)
	mid := newEndpoint(t, st, db)
	if _, err := late.Exec(ctx, `INSERT INTO contract_events (contract_pk, sub_mchid, out_contract_code, to_state, event, source, occurred_at)
		SELECT id, '', out_contract_code, 'terminated', 'terminate', 'ops', now() FROM contracts WHERE out_contract_code = 'old-0'`); err != nil {
		t.Fatal(err)
	}
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	all, _ := store.FeedAll(t, st, tail, 3, 100)
	page, err := st.Feed(ctx, mid.Cursor, 100)
	if err != nil {
		t.Fatal(err)
	}
	after := page.Items
	if all[0].Event != domain.EventTerminate {
		t.Fatalf("the late row sorts at %v, want first (its transaction is the oldest)", all)
	}
	if !slices.Contains(eventIDsOf(after), all[0].EventID) {
		t.Fatalf("an endpoint created while the late writer ran reads %v after its cursor: the late row %s is skipped", eventIDsOf(after), all[0].EventID)
	}
}

// An endpoint shows its lag: the rows after its cursor and the age of the
// first of them, on Postgres's clock; none once the cursor is at the
// tail. An unknown or malformed id is NOT_FOUND everywhere.
func TestEndpointLagAndNotFound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db := newStore(t)
	e := newEndpoint(t, st, db)
	signMany(t, st, "lag", 4)
	_, tail := store.FeedAll(t, st, e.Cursor, 4, 100)
	time.Sleep(20 * time.Millisecond)
	got, err := st.GetEndpoint(ctx, e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.LagEvents != 4 || got.LagSeconds <= 0 {
		t.Fatalf("lag %d events, %v s; want 4 and some seconds", got.LagEvents, got.LagSeconds)
	}
	list, err := st.ListEndpoints(ctx)
	if err != nil || len(list) != 1 || list[0].ID != e.ID || list[0].LagEvents != 4 {
		t.Fatalf("list %+v %v", list, err)
	}
	if _, err := st.UpdateEndpoint(ctx, e.ID, "ops:test", func(e *domain.Endpoint) error { e.Replay(tail); return nil }); err != nil {
		t.Fatal(err)
	}
	if got, err := st.GetEndpoint(ctx, e.ID); err != nil || got.LagEvents != 0 || got.LagSeconds != 0 {
		t.Fatalf("at the tail: %+v %v", got, err)
	}
	for _, id := range []string{"0b1f7c3e-6a59-4c43-9d55-2f1f0f6b9a10", "not-a-uuid", ""} {
		if _, err := st.GetEndpoint(ctx, id); !domain.IsCode(err, domain.CodeResourceNotFound) {
			t.Errorf("get %q: %v", id, err)
		}
		if _, err := st.UpdateEndpoint(ctx, id, "ops", func(*domain.Endpoint) error { return nil }); !domain.IsCode(err, domain.CodeResourceNotFound) {
			t.Errorf("update %q: %v", id, err)
		}
		if err := st.DeleteEndpoint(ctx, id); !domain.IsCode(err, domain.CodeResourceNotFound) {
			t.Errorf("delete %q: %v", id, err)
		}
		if _, _, err := st.Attempts(ctx, id, "", 10); !domain.IsCode(err, domain.CodeResourceNotFound) {
			t.Errorf("attempts %q: %v", id, err)
		}
	}
}

// UpdateEndpoint writes what fn decided and nothing when fn fails; a
// cursor move is recorded with its operator, and the move alone.
func TestUpdateEndpointPersistsTheDomainsDecision(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db := newStore(t)
	e := newEndpoint(t, st, db)
	signMany(t, st, "u", 2)
	_, tail := store.FeedAll(t, st, e.Cursor, 2, 100)
	url, paused := "https://other.example/h", true
	got, err := st.UpdateEndpoint(ctx, e.ID, "ops:alice", func(e *domain.Endpoint) error {
		return e.Edit(domain.EndpointPatch{URL: &url, Paused: &paused})
	})
	if err != nil || got.URL != url || !got.Paused || got.Description != "app" || !got.UpdatedAt.After(e.UpdatedAt) {
		t.Fatalf("edit: %+v %v", got, err)
	}
	boom := errors.New("no")
	if _, err := st.UpdateEndpoint(ctx, e.ID, "ops:alice", func(e *domain.Endpoint) error {
		e.Description = "changed"
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("failing fn: %v", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	if _, err := st.UpdateEndpoint(ctx, e.ID, "ops:bob", func(e *domain.Endpoint) error {
		e.Rotate([]byte("sealed-2"), now)
		e.Replay(tail)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err = st.GetEndpoint(ctx, e.ID)
	if err != nil || got.Description != "app" || string(got.SecretSealed) != "sealed-2" || string(got.PreviousSecretSealed) != "sealed" ||
		!got.PreviousSecretUntil.Equal(now.Add(domain.RotationOverlap)) || got.Cursor != tail {
		t.Fatalf("after rotate and replay: %+v %v", got, err)
	}
	moves, err := st.CursorMoves(ctx, e.ID)
	if err != nil || len(moves) != 1 || moves[0].From != e.Cursor || moves[0].To != tail || moves[0].Actor != "ops:bob" {
		t.Fatalf("moves %+v %v", moves, err)
	}
}

// Leases: one holder at a time, measured on Postgres's clock; a paused
// endpoint is not claimed and its lease is given up at renewal; only the
// holder's updates are written, and a moved cursor only under the lease;
// an expired lease is free for another; released leases are free at once.
func TestEndpointLeases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db := newStore(t)
	e := newEndpoint(t, st, db)
	p := newEndpoint(t, st, db)
	if _, err := st.UpdateEndpoint(ctx, p.ID, "ops", func(e *domain.Endpoint) error {
		paused := true
		return e.Edit(domain.EndpointPatch{Paused: &paused})
	}); err != nil {
		t.Fatal(err)
	}
	ids, err := st.ClaimEndpoints(ctx, "A", time.Hour, 10)
	if err != nil || !slices.Equal(ids, []string{e.ID}) {
		t.Fatalf("A claims %v %v, want only the unpaused %s", ids, err, e.ID)
	}
	if ids, err := st.ClaimEndpoints(ctx, "B", time.Hour, 10); err != nil || len(ids) != 0 {
		t.Fatalf("B claims %v %v while A holds", ids, err)
	}
	plan := func(token string) error {
		_, err := st.UpdateEndpointAsHolder(ctx, e.ID, token, "", func(e *domain.Endpoint) error {
			return e.Plan("0b1f7c3e-6a59-4c43-9d55-2f1f0f6b9a10", "through", 1)
		})
		return err
	}
	if err := plan("B"); !errors.Is(err, store.ErrNotHolder) || !domain.IsCode(err, domain.CodeInvalidState) {
		t.Fatalf("B plans: %v, want not the holder", err)
	}
	if err := plan("A"); err != nil {
		t.Fatal(err)
	}
	got, _ := st.EndpointState(ctx, e.ID)
	if got.DeliveryID != "0b1f7c3e-6a59-4c43-9d55-2f1f0f6b9a10" || got.DeliveryThrough != "through" || got.DeliveryCount != 1 {
		t.Fatalf("planned %+v", got)
	}
	if _, err := st.UpdateEndpointAsHolder(ctx, e.ID, "A", "", func(e *domain.Endpoint) error { return e.Accept(e.DeliveryID) }); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.EndpointState(ctx, e.ID); got.Cursor != "through" || got.InFlight() {
		t.Fatalf("accepted %+v", got)
	}

	// A renews for a short time and lets it lapse; B takes it over.
	if ids, err := st.RenewLeases(ctx, "A", 200*time.Millisecond); err != nil || !slices.Equal(ids, []string{e.ID}) {
		t.Fatalf("A renews %v %v", ids, err)
	}
	store.WaitFor(t, "B to take the lapsed lease", func() bool {
		ids, err := st.ClaimEndpoints(ctx, "B", time.Hour, 10)
		return err == nil && slices.Equal(ids, []string{e.ID})
	})
	if ids, err := st.RenewLeases(ctx, "A", time.Hour); err != nil || len(ids) != 0 {
		t.Fatalf("A renews %v %v after B took over", ids, err)
	}
	if err := plan("A"); !errors.Is(err, store.ErrNotHolder) {
		t.Fatalf("A plans after losing the lease: %v", err)
	}
	// Paused while held: given up at the holder's next renewal.
	if _, err := st.UpdateEndpoint(ctx, e.ID, "ops", func(e *domain.Endpoint) error {
		paused := true
		return e.Edit(domain.EndpointPatch{Paused: &paused})
	}); err != nil {
		t.Fatal(err)
	}
	if ids, err := st.RenewLeases(ctx, "B", time.Hour); err != nil || len(ids) != 0 {
		t.Fatalf("B renews %v %v a paused endpoint", ids, err)
	}
	for _, id := range []string{e.ID, p.ID} {
		if _, err := st.UpdateEndpoint(ctx, id, "ops", func(e *domain.Endpoint) error {
			paused := false
			return e.Edit(domain.EndpointPatch{Paused: &paused})
		}); err != nil {
			t.Fatal(err)
		}
	}
	ids, err = st.ClaimEndpoints(ctx, "C", time.Hour, 10)
	slices.Sort(ids)
	want := []string{e.ID, p.ID}
	slices.Sort(want)
	if err != nil || !slices.Equal(ids, want) {
		t.Fatalf("C claims %v %v, want both", ids, err)
	}
	if err := st.ReleaseLeases(ctx, "C", []string{p.ID}); err != nil {
		t.Fatal(err)
	}
	if ids, err := st.ClaimEndpoints(ctx, "D", time.Hour, 10); err != nil || !slices.Equal(ids, []string{p.ID}) {
		t.Fatalf("D claims %v %v, want the released one", ids, err)
	}
	if err := st.ReleaseLeases(ctx, "C", nil); err != nil {
		t.Fatal(err)
	}
	if ids, err := st.ClaimEndpoints(ctx, "D", time.Hour, 10); err != nil || !slices.Equal(ids, []string{e.ID}) {
		t.Fatalf("D claims %v %v, want the other once C released all", ids, err)
	}
}

// A saved range reads back exactly its rows; the cursor for a time is the
// position just before the first row recorded at or after it, the tail
// for a time after every row, "" for one before every row.
func TestFeedRangeAndCursorBefore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db := newStore(t)
	dbNow := func() time.Time {
		var now time.Time
		if err := db.Pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&now); err != nil {
			t.Fatal(err)
		}
		return now
	}
	before := dbNow()
	signMany(t, st, "a", 3)
	mid := dbNow()
	signMany(t, st, "b", 3)
	rows, tail := store.FeedAll(t, st, "", 6, 100)
	cursorAfter := func(n int) string {
		page, err := st.Feed(ctx, "", n)
		if err != nil || len(page.Items) != n {
			t.Fatalf("feed of %d: %+v %v", n, page, err)
		}
		return page.Next
	}
	c1, c4 := cursorAfter(1), cursorAfter(4)
	got, err := st.FeedRange(ctx, c1, c4)
	if err != nil || !slices.Equal(eventIDsOf(got), eventIDsOf(rows[1:4])) {
		t.Fatalf("range (1, 4]: %v %v, want %v", eventIDsOf(got), err, eventIDsOf(rows[1:4]))
	}
	wantJSON := fmt.Sprint(rows[1:4])
	if fmt.Sprint(got) != wantJSON {
		t.Fatalf("range rows differ from the feed's:\n%v\n%v", got, wantJSON)
	}
	if c, err := st.CursorBefore(ctx, before); err != nil || c != "" {
		t.Fatalf("before every row: %q %v", c, err)
	}
	c, err := st.CursorBefore(ctx, mid)
	if err != nil {
		t.Fatal(err)
	}
	if from, _ := store.FeedAll(t, st, c, 3, 100); !slices.Equal(eventIDsOf(from), eventIDsOf(rows[3:])) {
		t.Fatalf("from the middle: %v, want %v", eventIDsOf(from), eventIDsOf(rows[3:]))
	}
	if c, err := st.CursorBefore(ctx, dbNow().Add(time.Hour)); err != nil || c != tail {
		t.Fatalf("after every row: %q %v, want the tail %q", c, err, tail)
	}
	if err := store.CheckFeedCursor("nope"); !domain.IsCode(err, domain.CodeParamError) {
		t.Fatalf("bad cursor: %v", err)
	}
}

// Attempts are kept with the endpoint's last-attempt summary, paged newest
// first with an opaque cursor, discarded when the endpoint is gone, pruned
// past the retention in batches, and deleted with their endpoint.
func TestAttemptsRecordPagePruneAndDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db := newStore(t)
	e := newEndpoint(t, st, db)
	at := time.Now().UTC().Truncate(time.Microsecond)
	for i := range 5 {
		_, kept, err := st.RecordAttempt(ctx, domain.Attempt{EndpointID: e.ID, DeliveryID: newUUID(t, db), Kind: domain.DeliveryEvents,
			EventCount: i + 1, At: at.Add(time.Duration(i) * time.Second), Status: 500 + i, LatencyMS: 10 * i, Error: fmt.Sprint("e", i), Response: "r"})
		if err != nil || !kept {
			t.Fatalf("record %d: %v %v", i, kept, err)
		}
	}
	got, err := st.GetEndpoint(ctx, e.ID)
	if err != nil || got.LastAttempt == nil || !got.LastAttempt.At.Equal(at.Add(4*time.Second)) ||
		got.LastAttempt.Status != 504 || got.LastAttempt.Error != "e4" || got.LastAttempt.LatencyMS != 40 {
		t.Fatalf("last attempt %+v %v", got.LastAttempt, err)
	}
	var counts []int
	cursor := ""
	for pages := 0; ; pages++ {
		page, next, err := st.Attempts(ctx, e.ID, cursor, 2)
		if err != nil || pages > 3 {
			t.Fatalf("page %d: %v", pages, err)
		}
		for _, a := range page {
			counts = append(counts, a.EventCount)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if !slices.Equal(counts, []int{5, 4, 3, 2, 1}) {
		t.Fatalf("attempts newest first: %v", counts)
	}
	if _, _, err := st.Attempts(ctx, e.ID, "bogus", 2); !domain.IsCode(err, domain.CodeParamError) {
		t.Fatalf("bad cursor: %v", err)
	}

	// 2,500 attempts past the retention go, in batches; the recent stay.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO webhook_attempts (endpoint_id, delivery_id, kind, attempted_at)
		SELECT $1, gen_random_uuid(), 'events', $2::timestamptz - interval '1 second' * g FROM generate_series(1, 2500) g`,
		e.ID, at.Add(-domain.AttemptRetention)); err != nil {
		t.Fatal(err)
	}
	n, err := st.PruneAttempts(ctx, at.Add(-domain.AttemptRetention))
	if err != nil || n != 2500 {
		t.Fatalf("pruned %d %v, want 2500", n, err)
	}
	if left := countRows(t, db, `SELECT count(*) FROM webhook_attempts`); left != 5 {
		t.Fatalf("%d attempts left, want the 5 recent", left)
	}

	if _, err := st.UpdateEndpoint(ctx, e.ID, "ops", func(e *domain.Endpoint) error { e.Replay("x"); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteEndpoint(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, `SELECT (SELECT count(*) FROM webhook_attempts) + (SELECT count(*) FROM webhook_cursor_moves)`); n != 0 {
		t.Fatalf("%d attempts and moves left after delete", n)
	}
	if _, kept, err := st.RecordAttempt(ctx, domain.Attempt{EndpointID: e.ID, DeliveryID: newUUID(t, db), Kind: domain.DeliveryEvents, At: at}); err != nil || kept {
		t.Fatalf("an attempt for a deleted endpoint: kept %v %v", kept, err)
	}
}

// Every history row carries the contract's version once it was recorded:
// the version the decision moved it to, and the unchanged version for an
// ignored event (a sign reported after termination).
func TestHistoryCarriesContractVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, _ := newStore(t)
	fresh := contractIn("v-1", domain.StateCreated)
	apply := func(ch domain.Change) func(c *domain.Contract) error {
		return func(c *domain.Contract) error {
			ch.Details = map[string]any{}
			_, err := c.Apply(ctx, ch, time.Now())
			return err
		}
	}
	if _, err := st.UpdateOrCreate(ctx, fresh, apply(domain.Change{Event: domain.EventIssueSession, Source: domain.SourcePreSign,
		Session: &domain.Session{ID: "s-1", ExpiresAt: time.Now().Add(time.Hour)}})); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []domain.Change{
		{Event: domain.EventSign, Source: domain.SourceNotification, ContractID: "wx-v1"},
		{Event: domain.EventTerminate, Source: domain.SourceNotification},
		{Event: domain.EventSign, Source: domain.SourceNotification, ContractID: "wx-v1"},
	} {
		if _, err := st.Update(ctx, fresh.Key(), apply(ch)); err != nil {
			t.Fatal(err)
		}
	}
	h, err := st.History(ctx, fresh.Key())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range h {
		got = append(got, fmt.Sprintf("%s:%d:%v", r.Event, r.ContractVersion, r.Ignored))
	}
	want := []string{"issue_session:1:false", "sign:2:false", "terminate:3:false", "sign:3:true"}
	if !slices.Equal(got, want) {
		t.Fatalf("history %v, want %v", got, want)
	}
	c, err := st.Get(ctx, fresh.Key())
	if err != nil || c.Version != 3 {
		t.Fatalf("contract version %d %v, want 3 (the last row's)", c.Version, err)
	}
}
