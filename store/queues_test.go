package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/store"
)

// signNotification is an inbox entry for a PAPAY.SIGN of code.
func signNotification(id, code string) store.Notification {
	return store.Notification{NotificationID: id, EventType: "PAPAY.SIGN", OutContractCode: code,
		CreateTime: time.Now().UTC().Truncate(time.Second), Resource: json.RawMessage(`{"out_contract_code":"` + code + `"}`)}
}

// applySign applies a sign reported by a notification and answers the
// decision's outcome, as lifecycle does.
func applySign(ctx context.Context, contractID string) func(c *domain.Contract) (string, error) {
	return func(c *domain.Contract) (string, error) {
		isNew := c.IsNew()
		d, err := c.Apply(ctx, domain.Change{Event: domain.EventSign, Source: domain.SourceNotification,
			ContractID: contractID, OpenID: "o-1"}, time.Now())
		if err == nil && isNew {
			return "created", nil
		}
		return d.Outcome.String(), err
	}
}

// inboxRow reads one wechat_notifications row.
func inboxRow(t *testing.T, sch *pgtest.Schema, id string) (outcome string, deliveries int) {
	t.Helper()
	if err := sch.Pool.QueryRow(context.Background(), `SELECT outcome, delivery_count FROM wechat_notifications
		WHERE notification_id = $1`, id).Scan(&outcome, &deliveries); err != nil {
		t.Fatalf("inbox row %s: %v", id, err)
	}
	return outcome, deliveries
}

func TestReceiveNotification(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("the first delivery applies and records the outcome; a repeat only counts", func(t *testing.T) {
		t.Parallel()
		st, sch := newStore(t)
		if _, err := st.Create(ctx, contractIn("rn-1", domain.StateSessionIssued)); err != nil {
			t.Fatal(err)
		}
		r, err := st.ReceiveNotification(ctx, signNotification("n-1", "rn-1"),
			contractIn("rn-1", domain.StateCreated), applySign(ctx, "wx-1"))
		if err != nil || !r.First || r.Outcome != "applied" {
			t.Fatalf("first delivery: first %v outcome %q err %v; want true, applied", r.First, r.Outcome, err)
		}
		if r.Contract.State != domain.StateSigned || r.Contract.Version != 2 || len(r.History) != 1 || r.Last().Outcome != domain.OutcomeApply {
			t.Fatalf("persisted %+v, want the contract signed at version 2 with one history row", r.Persisted)
		}
		c, err := st.Get(ctx, domain.Key{OutContractCode: "rn-1"})
		if err != nil || c.State != domain.StateSigned || c.ContractID != "wx-1" || c.Version != 2 {
			t.Fatalf("contract %+v %v, want signed wx-1 at version 2", c, err)
		}
		if o, n := inboxRow(t, sch, "n-1"); o != "applied" || n != 1 {
			t.Fatalf("inbox row: outcome %q, %d deliveries; want applied, 1", o, n)
		}
		called := false
		r, err = st.ReceiveNotification(ctx, signNotification("n-1", "rn-1"), contractIn("rn-1", domain.StateCreated),
			func(c *domain.Contract) (string, error) { called = true; return "applied", nil })
		if err != nil || r.First || called || len(r.Decided) != 0 {
			t.Fatalf("repeat: first %v outcome %q err %v, apply called %v; want first false, apply not called", r.First, r.Outcome, err, called)
		}
		if o, n := inboxRow(t, sch, "n-1"); o != "applied" || n != 2 {
			t.Fatalf("inbox row after the repeat: outcome %q, %d deliveries; want applied, 2", o, n)
		}
		if n := countRows(t, sch, `SELECT count(*) FROM contract_events WHERE event = 'sign'`); n != 1 {
			t.Fatalf("%d sign history rows, want 1", n)
		}
	})

	t.Run("a contract never stored is created as reported", func(t *testing.T) {
		t.Parallel()
		st, sch := newStore(t)
		r, err := st.ReceiveNotification(ctx, signNotification("n-2", "rn-2"),
			contractIn("rn-2", domain.StateCreated), applySign(ctx, "wx-2"))
		if err != nil || !r.First || r.Outcome != "created" {
			t.Fatalf("first %v outcome %q err %v; want true, created", r.First, r.Outcome, err)
		}
		if r.Contract.ID == 0 || r.Contract.State != domain.StateSigned || len(r.History) != 1 {
			t.Fatalf("persisted %+v, want the stored contract signed with one history row", r.Persisted)
		}
		c, err := st.Get(ctx, domain.Key{OutContractCode: "rn-2"})
		if err != nil || c.State != domain.StateSigned || c.ContractID != "wx-2" {
			t.Fatalf("contract %+v %v, want signed wx-2", c, err)
		}
		if o, _ := inboxRow(t, sch, "n-2"); o != "created" {
			t.Fatalf("inbox outcome %q, want created", o)
		}
		if n := countRows(t, sch, `SELECT count(*) FROM contract_events WHERE out_contract_code = 'rn-2'`); n != 1 {
			t.Fatalf("%d history rows, want 1", n)
		}
	})

	t.Run("an apply error writes nothing, not even the inbox row", func(t *testing.T) {
		t.Parallel()
		st, sch := newStore(t)
		if _, err := st.Create(ctx, contractIn("rn-3", domain.StateSessionIssued)); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		_, err := st.ReceiveNotification(ctx, signNotification("n-3", "rn-3"), contractIn("rn-3", domain.StateCreated),
			func(c *domain.Contract) (string, error) {
				_, _ = c.Apply(ctx, domain.Change{Event: domain.EventSign, Source: domain.SourceNotification, ContractID: "wx-3"}, time.Now())
				return "", boom
			})
		if !errors.Is(err, boom) {
			t.Fatalf("err %v, want boom", err)
		}
		if n := countRows(t, sch, `SELECT count(*) FROM wechat_notifications`); n != 0 {
			t.Fatalf("%d inbox rows, want 0", n)
		}
		if c, _ := st.Get(ctx, domain.Key{OutContractCode: "rn-3"}); c.State != domain.StateSessionIssued || c.Version != 1 {
			t.Fatalf("contract %+v, want untouched", c)
		}
		if n := countRows(t, sch, `SELECT count(*) FROM contract_events`); n != 0 {
			t.Fatalf("%d history rows, want 0", n)
		}
	})

	t.Run("concurrent deliveries of one id apply once", func(t *testing.T) {
		t.Parallel()
		st, sch := newStore(t)
		const n = 32
		var (
			firsts atomic.Int32
		)
		together(n, func(int) {
			r, err := st.ReceiveNotification(ctx, signNotification("n-4", "rn-4"),
				contractIn("rn-4", domain.StateCreated), applySign(ctx, "wx-4"))
			if err != nil {
				t.Errorf("delivery: %v", err)
			}
			if r.First {
				firsts.Add(1)
			}
		})
		if got := firsts.Load(); got != 1 {
			t.Fatalf("%d first deliveries, want 1", got)
		}
		if o, d := inboxRow(t, sch, "n-4"); o != "created" || d != n {
			t.Fatalf("inbox row: outcome %q, %d deliveries; want created, %d", o, d, n)
		}
		if got := countRows(t, sch, `SELECT count(*) FROM contracts`); got != 1 {
			t.Fatalf("%d contracts, want 1", got)
		}
		if got := countRows(t, sch, `SELECT count(*) FROM contract_events`); got != 1 {
			t.Fatalf("%d history rows, want 1", got)
		}
	})
}

func TestUpdateOrCreate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sign := func(c *domain.Contract) error {
		_, err := c.Apply(ctx, domain.Change{Event: domain.EventSign, Source: domain.SourceReconcile, ContractID: "wx-uc"}, time.Now())
		return err
	}

	t.Run("creates the fresh contract when none is stored", func(t *testing.T) {
		t.Parallel()
		st, sch := newStore(t)
		p, err := st.UpdateOrCreate(ctx, contractIn("uc-1", domain.StateCreated), sign)
		c := p.Contract
		if err != nil || c.ID == 0 || c.Version != 1 || c.State != domain.StateSigned || p.Last().Outcome != domain.OutcomeApply {
			t.Fatalf("created %+v (%v) %v, want a stored signed contract", c, p.Last().Outcome, err)
		}
		if len(p.History) != 1 || p.History[0].Decision.From != "" || p.History[0].Change.Event != domain.EventSign {
			t.Fatalf("history persisted %+v, want the one sign row from nothing", p.History)
		}
		if n := countRows(t, sch, `SELECT count(*) FROM contract_events WHERE out_contract_code = 'uc-1' AND event = 'sign'`); n != 1 {
			t.Fatalf("%d sign history rows, want 1", n)
		}
	})

	t.Run("updates the stored contract, not the fresh one", func(t *testing.T) {
		t.Parallel()
		st, sch := newStore(t)
		stored, err := st.Create(ctx, contractIn("uc-2", domain.StateSessionIssued))
		if err != nil {
			t.Fatal(err)
		}
		var seen domain.State
		p, err := st.UpdateOrCreate(ctx, contractIn("uc-2", domain.StateCreated), func(c *domain.Contract) error {
			seen = c.State
			return sign(c)
		})
		c := p.Contract
		if err != nil || c.ID != stored.ID || c.Version != 2 || c.State != domain.StateSigned {
			t.Fatalf("updated %+v %v, want the stored contract signed at version 2", c, err)
		}
		// fn is first tried on fresh (the insert finds the key taken), then
		// on the stored contract: the last call decides.
		if seen != domain.StateSessionIssued {
			t.Fatalf("fn last saw %s, want the stored session_issued", seen)
		}
		if n := countRows(t, sch, `SELECT count(*) FROM contracts`); n != 1 {
			t.Fatalf("%d contracts, want 1", n)
		}
		if n := countRows(t, sch, `SELECT count(*) FROM contract_events`); n != 1 {
			t.Fatalf("%d history rows, want 1", n)
		}
	})

	t.Run("an error from fn writes nothing", func(t *testing.T) {
		t.Parallel()
		st, sch := newStore(t)
		boom := errors.New("boom")
		if _, err := st.UpdateOrCreate(ctx, contractIn("uc-3", domain.StateCreated), func(*domain.Contract) error { return boom }); !errors.Is(err, boom) {
			t.Fatalf("err %v, want boom", err)
		}
		if n := countRows(t, sch, `SELECT count(*) FROM contracts`); n != 0 {
			t.Fatalf("%d contracts, want 0", n)
		}
	})

	t.Run("concurrent callers store one contract and apply once", func(t *testing.T) {
		t.Parallel()
		st, sch := newStore(t)
		const n = 32
		var (
			applied atomic.Int32
		)
		together(n, func(int) {
			p, err := st.UpdateOrCreate(ctx, contractIn("uc-4", domain.StateCreated), sign)
			if err != nil {
				t.Errorf("UpdateOrCreate: %v", err)
				return
			}
			if d := p.Last(); d.Outcome == domain.OutcomeApply {
				applied.Add(1)
			} else if d.Outcome != domain.OutcomeRepeat {
				t.Errorf("outcome %v, want applied or repeat", d.Outcome)
			}
		})
		if got := applied.Load(); got != 1 {
			t.Fatalf("%d applied, want 1", got)
		}
		if got := countRows(t, sch, `SELECT count(*) FROM contracts`); got != 1 {
			t.Fatalf("%d contracts, want 1", got)
		}
		if got := countRows(t, sch, `SELECT count(*) FROM contract_events`); got != 1 {
			t.Fatalf("%d history rows, want 1", got)
		}
	})
}

// scheduleCheck is the reconciler's domain step on claiming a contract.
func scheduleCheck(now time.Time, firstGap time.Duration) func(c *domain.Contract) error {
	return func(c *domain.Contract) error {
		c.ScheduleCheck(now, firstGap)
		return nil
	}
}

// expireAll is the sweeper's domain step.
func expireAll(ctx context.Context, now time.Time) func(c *domain.Contract) error {
	return func(c *domain.Contract) error {
		_, err := c.Apply(ctx, domain.Change{Event: domain.EventExpire, Source: domain.SourceSweeper, OccurredAt: now}, now)
		return err
	}
}

func TestUpdateDueSessions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("locks exactly the due sessions, at most limit at a time", func(t *testing.T) {
		t.Parallel()
		st, sch := newStore(t)
		now := time.Now().UTC()
		for i := range 5 {
			c := contractIn(fmt.Sprintf("due-%d", i), domain.StateSessionIssued)
			past := now.Add(-time.Duration(i+1) * time.Minute)
			c.SessionExpiresAt = &past
			if _, err := st.Create(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []domain.Contract{contractIn("later", domain.StateSessionIssued), contractIn("created", domain.StateCreated)} {
			if _, err := st.Create(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		var seen []string
		ps, err := st.UpdateDueSessions(ctx, now, 3, func(c *domain.Contract) error {
			seen = append(seen, c.OutContractCode)
			return expireAll(ctx, now)(c)
		})
		// Oldest expiry first.
		if err != nil || len(ps) != 3 || !slices.Equal(seen, []string{"due-4", "due-3", "due-2"}) {
			t.Fatalf("first batch: %d %v %v; want 3: due-4, due-3, due-2", len(ps), seen, err)
		}
		for i, p := range ps {
			if p.Contract.OutContractCode != seen[i] || p.Contract.State != domain.StateExpired || len(p.History) != 1 || p.Last().To != domain.StateExpired {
				t.Fatalf("persisted %d: %+v, want %s expired as stored with one history row", i, p, seen[i])
			}
		}
		if ps, err = st.UpdateDueSessions(ctx, now, 3, expireAll(ctx, now)); err != nil || len(ps) != 2 {
			t.Fatalf("second batch: %d %v, want 2", len(ps), err)
		}
		if ps, err = st.UpdateDueSessions(ctx, now, 3, expireAll(ctx, now)); err != nil || len(ps) != 0 {
			t.Fatalf("third batch: %d %v, want 0", len(ps), err)
		}
		if got := countRows(t, sch, `SELECT count(*) FROM contracts WHERE state = 'expired' AND out_contract_code LIKE 'due-%'`); got != 5 {
			t.Fatalf("%d due sessions expired, want 5", got)
		}
		if got := countRows(t, sch, `SELECT count(*) FROM contracts WHERE state = 'expired'`); got != 5 {
			t.Fatalf("%d expired in all, want 5 (neither the later session nor the created contract)", got)
		}
		if got := countRows(t, sch, `SELECT count(*) FROM contract_events WHERE event = 'expire'`); got != 5 {
			t.Fatalf("%d expire history rows, want 5", got)
		}
	})

	t.Run("an error from fn writes nothing", func(t *testing.T) {
		t.Parallel()
		st, sch := newStore(t)
		now := time.Now().UTC()
		for i := range 2 {
			c := contractIn(fmt.Sprintf("err-%d", i), domain.StateSessionIssued)
			past := now.Add(-time.Minute)
			c.SessionExpiresAt = &past
			if _, err := st.Create(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		calls := 0
		boom := errors.New("boom")
		_, err := st.UpdateDueSessions(ctx, now, 10, func(c *domain.Contract) error {
			if calls++; calls == 2 {
				return boom
			}
			return expireAll(ctx, now)(c)
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err %v, want boom", err)
		}
		if got := countRows(t, sch, `SELECT count(*) FROM contracts WHERE state = 'expired'`); got != 0 {
			t.Fatalf("%d expired, want 0", got)
		}
		if got := countRows(t, sch, `SELECT count(*) FROM contract_events`); got != 0 {
			t.Fatalf("%d history rows, want 0", got)
		}
	})

	t.Run("concurrent sweepers expire each session once", func(t *testing.T) {
		t.Parallel()
		st, sch := newStore(t)
		now := time.Now().UTC()
		const due = 60
		for i := range due {
			c := contractIn(fmt.Sprintf("race-%02d", i), domain.StateSessionIssued)
			past := now.Add(-time.Minute)
			c.SessionExpiresAt = &past
			if _, err := st.Create(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		var (
			locked atomic.Int32
		)
		together(8, func(int) {
			for {
				ps, err := st.UpdateDueSessions(ctx, now, 5, expireAll(ctx, now))
				n := len(ps)
				if err != nil {
					t.Errorf("sweep: %v", err)
					return
				}
				locked.Add(int32(n))
				if n == 0 {
					return
				}
			}
		})
		// SKIP LOCKED: a sweeper that finds every due row taken stops; the
		// rows it skipped are another's. Each was locked exactly once.
		if got := locked.Load(); got != due {
			t.Fatalf("%d sessions locked in all, want %d", got, due)
		}
		if got := countRows(t, sch, `SELECT count(*) FROM contract_events WHERE event = 'expire'`); got != due {
			t.Fatalf("%d expire history rows, want %d", got, due)
		}
	})
}

func TestClaimReconcileDue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const (
		minAge   = time.Minute
		lookBack = 24 * time.Hour
		firstGap = time.Minute
	)
	now := time.Now().UTC().Truncate(time.Microsecond)
	st, sch := newStore(t)
	// Each contract's age and state, set by hand.
	for _, c := range []struct {
		code    string
		state   domain.State
		updated time.Duration // updated_at = now - updated
		expired time.Duration // expired_at = now - expired, for expired ones
	}{
		{"open-old", domain.StateSessionIssued, 2 * time.Minute, 0},
		{"open-young", domain.StateSessionIssued, 30 * time.Second, 0},
		{"expired-recent", domain.StateExpired, 2 * time.Hour, time.Hour},
		{"expired-long-ago", domain.StateExpired, 48 * time.Hour, 25 * time.Hour},
		{"signed", domain.StateSigned, time.Hour, 0},
	} {
		if _, err := st.Create(ctx, contractIn(c.code, domain.StateCreated)); err != nil {
			t.Fatal(err)
		}
		var expiredAt *time.Time
		if c.expired != 0 {
			at := now.Add(-c.expired)
			expiredAt = &at
		}
		if _, err := sch.Pool.Exec(ctx, `UPDATE contracts SET state = $2, updated_at = $3::timestamptz, expired_at = $4,
			session_id = 'sess-' || out_contract_code, session_expires_at = $3::timestamptz + interval '1 hour'
			WHERE out_contract_code = $1`, c.code, string(c.state), now.Add(-c.updated), expiredAt); err != nil {
			t.Fatal(err)
		}
	}
	claim := func(at time.Time, limit int) []string {
		t.Helper()
		ps, err := st.ClaimReconcileDue(ctx, at, minAge, lookBack, limit, scheduleCheck(at, firstGap))
		if err != nil {
			t.Fatal(err)
		}
		var codes []string
		for _, p := range ps {
			codes = append(codes, p.Contract.OutContractCode)
			if p.Contract.NextCheckAt == nil || p.Contract.CheckCount == 0 || len(p.History) != 0 {
				t.Fatalf("claimed %+v, want its next check scheduled as stored and no history", p)
			}
		}
		slices.Sort(codes)
		return codes
	}
	// Due: the open session older than minAge and the session expired
	// within lookBack; not the young one, the long-expired one or the signed.
	if got := claim(now, 10); !slices.Equal(got, []string{"expired-recent", "open-old"}) {
		t.Fatalf("first claim %v, want expired-recent, open-old", got)
	}
	var next time.Time
	var checks int
	if err := sch.Pool.QueryRow(ctx, `SELECT next_check_at, check_count FROM contracts WHERE out_contract_code = 'open-old'`).Scan(&next, &checks); err != nil {
		t.Fatal(err)
	}
	if !next.Equal(now.Add(firstGap)) || checks != 1 {
		t.Fatalf("after one check: next %s, %d checks; want now+%s, 1", next, checks, firstGap)
	}
	// Scheduling a check is not a change: updated_at and version stay.
	var updated time.Time
	var version int64
	if err := sch.Pool.QueryRow(ctx, `SELECT updated_at, version FROM contracts WHERE out_contract_code = 'open-old'`).Scan(&updated, &version); err != nil {
		t.Fatal(err)
	}
	if !updated.Equal(now.Add(-2*time.Minute)) || version != 1 {
		t.Fatalf("after one check: updated_at %s, version %d; want unchanged %s, 1", updated, version, now.Add(-2*time.Minute))
	}
	// Claimed ones are not due again before their next check.
	if got := claim(now.Add(firstGap-time.Second), 10); !slices.Equal(got, []string{"open-young"}) {
		t.Fatalf("claim before the next check %v, want only open-young (now old enough)", got)
	}
	// At the next check the gap doubles.
	later := now.Add(firstGap)
	if got := claim(later, 10); !slices.Equal(got, []string{"expired-recent", "open-old"}) {
		t.Fatalf("claim at the next check %v, want expired-recent, open-old", got)
	}
	if err := sch.Pool.QueryRow(ctx, `SELECT next_check_at, check_count FROM contracts WHERE out_contract_code = 'open-old'`).Scan(&next, &checks); err != nil {
		t.Fatal(err)
	}
	if !next.Equal(later.Add(2*firstGap)) || checks != 2 {
		t.Fatalf("after two checks: next %s, %d checks; want later+%s, 2", next, checks, 2*firstGap)
	}
	// limit bounds one claim.
	if got := claim(now.Add(24*time.Hour), 1); len(got) != 1 {
		t.Fatalf("claim with limit 1 gave %v", got)
	}
}

// Concurrent claimers never get the same contract: each due contract is
// claimed exactly once.
func TestClaimReconcileDueConcurrentClaimersSplitTheWork(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, sch := newStore(t)
	const due = 40
	for i := range due {
		if _, err := st.Create(ctx, contractIn(fmt.Sprintf("rc-%02d", i), domain.StateSessionIssued)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sch.Pool.Exec(ctx, `UPDATE contracts SET updated_at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	together(8, func(int) {
		for {
			ps, err := st.ClaimReconcileDue(ctx, now, time.Minute, 24*time.Hour, 3, scheduleCheck(now, time.Hour))
			if err != nil {
				t.Errorf("claim: %v", err)
				return
			}
			if len(ps) == 0 {
				return
			}
			mu.Lock()
			for _, p := range ps {
				seen[p.Contract.OutContractCode]++
			}
			mu.Unlock()
		}
	})
	if len(seen) != due {
		t.Fatalf("%d contracts claimed, want %d", len(seen), due)
	}
	for code, n := range seen {
		if n != 1 {
			t.Errorf("%s claimed %d times, want once", code, n)
		}
	}
	if got := countRows(t, sch, `SELECT count(*) FROM contracts WHERE check_count = 1`); got != due {
		t.Fatalf("%d contracts with one check, want %d", got, due)
	}
}
