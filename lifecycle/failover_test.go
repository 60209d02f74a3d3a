package lifecycle_test

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgcluster"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/lifecycle"
	"github.com/contractd/contractd/store"
	"github.com/contractd/contractd/wechatpaysim"
	"github.com/jackc/pgx/v5/pgxpool"
)

// clusterStore opens a store on a throwaway cluster's database, migrating
// it first when migrate is set.
func clusterStore(t *testing.T, url string, migrate bool) (*store.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.OpenOn(t, url, migrate)
	return store.New(pool), pool
}

// A real failover loses two notifications contractd acknowledged (a
// signing and a user's termination: WeChat never sends them again). On the
// promoted standby, two replicas watch the timeline at once: the healing
// asks WeChat exactly once about each contract the promotion may have left
// behind (the open session, the contracts signed within the window) and
// about nothing else (a contract signed long ago, a terminated one), and
// applies its answers: the lost signing and the lost termination are
// recorded, a contract WeChat still has signed stays as it was.
func TestHealingAfterARealFailoverAsksWeChatOnceAndAppliesItsAnswers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	primary := pgcluster.Start(t)
	standby := primary.StartStandby(t)
	st1, pool1 := clusterStore(t, primary.URL, true)
	e := newEnvOn(t, nil, st1, config.DefaultLeaseTTL, config.DefaultLeaseWait)

	if _, err := e.svc.PreSign(ctx, e.request("heal-sign"), ""); err != nil {
		t.Fatal(err)
	}
	healTerm := e.signed("heal-term")
	staySigned := e.signed("stay-signed")
	oldSigned := e.signed("old-signed")
	done := e.signed("done")
	if _, err := e.sim.TerminateAsUser(ctx, done.ContractID); err != nil {
		t.Fatal(err)
	}
	e.waitFor("done", func(c domain.Contract) bool { return c.State == domain.StateTerminated })
	if _, err := pool1.Exec(ctx, `UPDATE contracts SET updated_at = now() - interval '3 hours' WHERE out_contract_code = 'old-signed'`); err != nil {
		t.Fatal(err)
	}

	primary.FailOver(t, standby, func() {
		// Acknowledged on the primary, lost with it.
		if _, err := e.sim.Sign(ctx, wechatpaysim.SignRequest{OutContractCode: "heal-sign"}); err != nil {
			t.Fatal(err)
		}
		e.waitFor("heal-sign", func(c domain.Contract) bool { return c.State == domain.StateSigned })
		if _, err := e.sim.TerminateAsUser(ctx, healTerm.ContractID); err != nil {
			t.Fatal(err)
		}
		e.waitFor("heal-term", func(c domain.Contract) bool { return c.State == domain.StateTerminated })
	})

	replicas := make([]*lifecycle.Service, 2)
	var st2 *store.Store
	for i := range replicas {
		st2, _ = clusterStore(t, standby.URL, false)
		replicas[i] = e.serviceOn(st2)
	}
	get := func(code string) domain.Contract {
		t.Helper()
		c, err := st2.Get(ctx, domain.Key{OutContractCode: code})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if c := get("heal-sign"); c.State != domain.StateSessionIssued {
		t.Fatalf("heal-sign on the new leader is %s: the failover did not lose its signing", c.State)
	}
	if c := get("heal-term"); c.State != domain.StateSigned {
		t.Fatalf("heal-term on the new leader is %s: the failover did not lose its termination", c.State)
	}
	before := e.wx.Queried()
	checked := make([]int, len(replicas))
	var wg sync.WaitGroup
	for i, svc := range replicas {
		wg.Go(func() {
			var err error
			if checked[i], err = svc.WatchTimeline(ctx); err != nil {
				t.Errorf("replica %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if checked[0]+checked[1] != 3 {
		t.Fatalf("the replicas checked %d and %d contracts, want 3 in all", checked[0], checked[1])
	}
	asked := e.wx.Queried()
	for k, n := range before {
		asked[k] -= n
		if asked[k] == 0 {
			delete(asked, k)
		}
	}
	want := map[string]int{"heal-sign": 1, healTerm.ContractID: 1, staySigned.ContractID: 1}
	if !maps.Equal(asked, want) {
		t.Fatalf("WeChat was asked about %v, want exactly once each about %v (not %s, signed long ago, nor %s, terminated)",
			asked, want, oldSigned.ContractID, done.ContractID)
	}
	if c := get("heal-sign"); c.State != domain.StateSigned {
		t.Errorf("heal-sign ends %s, want signed", c.State)
	}
	if c := get("heal-term"); c.State != domain.StateTerminated {
		t.Errorf("heal-term ends %s, want terminated", c.State)
	}
	if c := get("stay-signed"); c.State != domain.StateSigned || c.Version != staySigned.Version {
		t.Errorf("stay-signed ends %s at version %d, want signed at %d (unchanged)", c.State, c.Version, staySigned.Version)
	}
	if c := get("old-signed"); c.State != domain.StateSigned || c.Version != oldSigned.Version {
		t.Errorf("old-signed ends %s at version %d, want unchanged", c.State, c.Version)
	}
	h, err := st2.History(ctx, domain.Key{OutContractCode: "heal-sign"})
	if err != nil || len(h) == 0 || h[len(h)-1].Event != domain.EventSign || h[len(h)-1].Source != domain.SourceReconcile {
		t.Errorf("heal-sign's history %+v %v, want its signing recorded by reconcile last", h, err)
	}
	// The healing is done: another round asks about nothing.
	if n, err := replicas[0].WatchTimeline(ctx); err != nil || n != 0 {
		t.Fatalf("a later round checked %d (%v), want 0", n, err)
	}
}

// A failover that loses a pre-sign's first transaction (the contract and
// the lease it took) while WeChat opens the session leaves saving the
// session with no contract (here the row is deleted during the WeChat call,
// as the promoted standby never had it; scripts/drill met it for real). The
// pre-sign answers UNAVAILABLE (session opened, not saved, retry after a
// second), not CONTRACT_NOT_EXIST for the contract the caller is creating;
// the identical retry creates the contract with a new session.
func TestPreSignWhoseContractAFailoverLostIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, config.DefaultLeaseTTL, config.DefaultLeaseWait)
	var once sync.Once
	e.wx.Before(func(op string) {
		if op != "presign" {
			return
		}
		once.Do(func() {
			tag, err := e.db.Pool.Exec(ctx, `DELETE FROM contracts WHERE out_contract_code = 'lost-presign'`)
			if err != nil || tag.RowsAffected() != 1 {
				t.Errorf("deleting the pre-sign's contract: %v (%d rows)", err, tag.RowsAffected())
			}
		})
	})
	_, err := e.svc.PreSign(ctx, e.request("lost-presign"), "")
	var de *domain.Error
	if !domain.IsCode(err, domain.CodeUnavailable) || !asDomain(err, &de) || de.RetryAfter != time.Second ||
		de.Detail["session_opened"] != true || de.Detail["session_saved"] != false {
		t.Fatalf("pre-sign whose contract was lost: %v (%+v), want UNAVAILABLE, retry after 1s, session opened and not saved", err, de)
	}
	res, err := e.svc.PreSign(ctx, e.request("lost-presign"), "")
	if err != nil || !res.Created || res.Contract.State != domain.StateSessionIssued {
		t.Fatalf("the identical retry: %+v %v, want the contract created with a session", res, err)
	}
	if n := e.wx.Calls("presign"); n != 2 {
		t.Errorf("WeChat was asked for %d sessions, want 2 (the lost one and the retry's)", n)
	}
}

// A healing check WeChat does not answer is not lost with the call: the
// contract is due again a reconciliation gap later, and then its lost
// termination is applied. (The mark is set through the domain's door, as
// the timeline watch sets it after a promotion.)
func TestHealingCheckThatFailsIsRetried(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, config.DefaultLeaseTTL, config.DefaultLeaseWait)
	c := e.signed("heal-retry")
	// Terminated at WeChat, its notification never delivered.
	e.sim.SetFaults(wechatpaysim.Faults{DropDeliveries: true})
	if _, err := e.sim.TerminateAsUser(ctx, c.ContractID); err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	if _, err := e.store.Update(ctx, c.Key(), func(c *domain.Contract) error {
		if !c.MarkForHealing(now, now, config.DefaultHealWindow) {
			t.Error("a contract signed just now needs no healing?")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Every try of the first check fails.
	e.sim.SetFaults(wechatpaysim.Faults{ErrorCode: "SYSTEM_ERROR", ErrorCount: 4, PathContains: "contract"})
	if n, err := e.svc.Heal(ctx); err != nil || n != 1 {
		t.Fatalf("first heal: %d %v, want 1 checked", n, err)
	}
	got, err := e.store.Get(ctx, c.Key())
	if err != nil || got.State != domain.StateSigned || got.HealDueAt == nil || got.HealDueAt.Before(now.Add(config.DefaultReconcileAfter)) {
		t.Fatalf("after the failed check: %s due %v (%v), want signed and due a gap later", got.State, got.HealDueAt, err)
	}
	if n, err := e.svc.Heal(ctx); err != nil || n != 0 {
		t.Fatalf("heal before the retry is due: %d %v, want 0", n, err)
	}
	e.clock.Advance(config.DefaultReconcileAfter + time.Second)
	if n, err := e.svc.Heal(ctx); err != nil || n != 1 {
		t.Fatalf("heal once the retry is due: %d %v, want 1", n, err)
	}
	if got, err = e.store.Get(ctx, c.Key()); err != nil || got.State != domain.StateTerminated || got.HealDueAt != nil {
		t.Fatalf("after the retried check: %s due %v (%v), want terminated and no longer due", got.State, got.HealDueAt, err)
	}
}
