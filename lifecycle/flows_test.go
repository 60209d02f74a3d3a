package lifecycle_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/wechatpay"
	"github.com/contractd/contractd/wechatpaysim"
)

func TestPreSignTakesOverTheLeaseOfAHolderThatDied(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const lease = 2 * time.Second
	e := newEnv(t, lease, 300*time.Millisecond)
	req := e.request("dead-holder")
	// A holder takes the lease and dies before its call's outcome is saved.
	if _, err := e.store.UpdateOrCreate(ctx, domain.NewContract(req), func(c *domain.Contract) error {
		_, err := c.BeginPreSign(ctx, req, e.clock.Now(), lease, e.clock.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// While its lease runs, an identical request waits its bound, then
	// answers IN_PROGRESS with when to ask again.
	_, err := e.svc.PreSign(ctx, req, "")
	var de *domain.Error
	if !domain.IsCode(err, domain.CodeInProgress) || !asDomain(err, &de) || de.RetryAfter < time.Second || de.RetryAfter > lease {
		t.Fatalf("while the lease runs: %v, want IN_PROGRESS with Retry-After in [1s, %s]", err, lease)
	}
	if n := e.wx.Calls("presign"); n != 0 {
		t.Fatalf("%d pre-sign calls while another holder's lease ran", n)
	}
	if got := e.metric("contractd_lease_waits_total", map[string]string{"flow": "presign", "result": "in_progress"}); got != 1 {
		t.Fatalf("waits counted %v", got)
	}

	// Once it lapses, the next identical request takes over and opens a session.
	e.clock.Advance(lease + time.Millisecond)
	res, err := e.svc.PreSign(ctx, req, "")
	if err != nil || !res.Created || res.Contract.State != domain.StateSessionIssued || len(res.Launch) == 0 {
		t.Fatalf("after the lease lapsed: %+v %v", res, err)
	}
	if n := e.wx.Calls("presign"); n != 1 {
		t.Fatalf("%d pre-sign calls, want 1", n)
	}
	h := e.history("dead-holder")
	if len(h) != 1 || h[0].Event != domain.EventIssueSession {
		t.Fatalf("history %+v", h)
	}
	var details map[string]any
	_ = json.Unmarshal(h[0].Details, &details)
	if details["took_over_lapsed_lease"] != true {
		t.Fatalf("the issue_session row does not say it took over a lapsed lease: %s", h[0].Details)
	}
	if c := e.waitFor("dead-holder", func(domain.Contract) bool { return true }); c.LeaseToken != "" || c.LeaseExpiresAt != nil {
		t.Fatalf("lease left behind: %+v", c)
	}
}

func TestPreSignWaitersGetTheHoldersSessionWhileItRenewsItsLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The lease is long enough that a renewer starved by a loaded machine
	// (the suite runs under -race on two cores) still renews in time: a
	// lapse here would be a correct takeover, not the behaviour under test.
	const lease = 1500 * time.Millisecond
	e := newEnv(t, lease, 60*time.Second)
	release := make(chan struct{})
	e.wx.Before(func(op string) {
		if op == "presign" {
			<-release
		}
	})
	req := e.request("shared")
	type answer struct {
		res lifecycleResult
		err error
	}
	answers := make(chan answer, 9)
	preSign := func() {
		res, err := e.svc.PreSign(ctx, req, "")
		answers <- answer{lifecycleResult{res.Created, string(res.Launch)}, err}
	}
	go preSign()
	first := e.waitFor("shared", func(c domain.Contract) bool { return c.LeaseToken != "" })
	for range 8 {
		go preSign()
	}
	// The holder's call is held far past its lease term: only renewal keeps
	// the waiters from taking over.
	e.waitFor("shared", func(c domain.Contract) bool {
		return c.LeaseExpiresAt != nil && c.LeaseExpiresAt.Sub(*first.LeaseExpiresAt) > 2*lease
	})
	close(release)
	created, launches := 0, map[string]int{}
	for range 9 {
		a := <-answers
		if a.err != nil {
			t.Fatalf("pre-sign: %v", a.err)
		}
		if a.res.created {
			created++
		}
		launches[a.res.launch]++
	}
	if created != 1 || len(launches) != 1 || e.wx.Calls("presign") != 1 {
		t.Fatalf("created %d, distinct launches %d, WeChat calls %d; want 1, 1, 1", created, len(launches), e.wx.Calls("presign"))
	}
}

type lifecycleResult struct {
	created bool
	launch  string
}

func TestTerminateIsSingleFlightAndIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A lease long enough that its renewer, starved on a loaded machine,
	// still renews in time: a lapse would be a correct takeover (a second
	// call to WeChat), not what this test is about.
	e := newEnv(t, 5*time.Second, 60*time.Second)
	e.signed("t-1")
	release := make(chan struct{})
	e.wx.Before(func(op string) {
		if op == "terminate" {
			<-release
		}
	})
	key := domain.Key{OutContractCode: "t-1"}
	const n = 10
	var wg sync.WaitGroup
	errs := make(chan error, n)
	states := make(chan domain.State, n)
	for range n {
		wg.Go(func() {
			c, err := e.svc.Terminate(ctx, key, "", "customer asked")
			errs <- err
			states <- c.State
		})
	}
	e.waitFor("t-1", func(c domain.Contract) bool { return c.LeaseToken != "" })
	close(release)
	wg.Wait()
	close(errs)
	close(states)
	for err := range errs {
		if err != nil {
			t.Fatalf("terminate: %v", err)
		}
	}
	for st := range states {
		if st != domain.StateTerminated {
			t.Fatalf("a caller answered with state %s", st)
		}
	}
	if got := e.wx.Calls("terminate"); got != 1 {
		t.Fatalf("%d WeChat terminate calls for %d concurrent terminates, want 1", got, n)
	}
	if c, err := e.svc.Terminate(ctx, key, "", "again"); err != nil || c.State != domain.StateTerminated || e.wx.Calls("terminate") != 1 {
		t.Fatalf("repeated terminate: %v %s, %d calls", err, c.State, e.wx.Calls("terminate"))
	}
	terminates := 0
	for _, h := range e.history("t-1") {
		if h.Event == domain.EventTerminate {
			terminates++
			if h.Source != domain.SourceOps {
				t.Fatalf("terminate recorded with source %s", h.Source)
			}
		}
	}
	if terminates != 1 {
		t.Fatalf("%d terminate rows, want 1", terminates)
	}
}

func TestTerminateAfterAHolderDiedMidCallAsksWeChatAndRecordsIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const lease = time.Second
	e := newEnv(t, lease, 300*time.Millisecond)
	c := e.signed("t-dead")
	e.sim.SetFaults(wechatpaysim.Faults{DropDeliveries: true}) // WeChat's notification is lost too
	// A holder takes the lease, its terminate reaches WeChat, and it dies.
	if _, err := e.store.Update(ctx, c.Key(), func(c *domain.Contract) error {
		_, err := c.BeginTermination("", "first operator", e.clock.Now(), lease, e.clock.Now())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.wx.Client.TerminateGlobal(ctx, c.ContractID, wechatpay.GlobalTerminateRequest{AppID: e.keys.AppID, TerminationNote: "first operator"}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(lease + time.Millisecond)

	out, err := e.svc.Terminate(ctx, c.Key(), "", "second operator")
	if err != nil || out.State != domain.StateTerminated {
		t.Fatalf("terminate after WeChat already ended it: %v %+v", err, out)
	}
	if got, q := e.wx.Calls("terminate"), e.wx.Calls("query"); got != 1 || q != 1 {
		t.Fatalf("%d terminate and %d query calls, want 1 and 1", got, q)
	}
	h := e.history("t-dead")
	last := h[len(h)-1]
	var details map[string]any
	_ = json.Unmarshal(last.Details, &details)
	if last.Event != domain.EventTerminate || last.Source != domain.SourceOps || details["note"] != "second operator" || details["reported_by"] != "reconcile" {
		t.Fatalf("terminate row %+v %s", last, last.Details)
	}
	if out.LeaseToken != "" || out.OpsTermination != nil {
		t.Fatalf("lease or mark left: %+v", out)
	}
}

func TestTerminateFailureReleasesTheLeaseAndTheMark(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, time.Second, 300*time.Millisecond)
	c := e.signed("t-fail")
	e.sim.SetFaults(wechatpaysim.Faults{ErrorCode: "PARAM_ERROR", ErrorCount: 1, PathContains: "/terminate"})
	_, err := e.svc.Terminate(ctx, c.Key(), "", "customer asked")
	if !domain.IsCode(err, domain.CodeUpstream) {
		t.Fatalf("terminate refused by WeChat: %v", err)
	}
	after := e.waitFor("t-fail", func(domain.Contract) bool { return true })
	if after.State != domain.StateSigned || after.LeaseToken != "" || after.OpsTermination != nil ||
		after.LastError == nil || after.LastError.Code != "PARAM_ERROR" || after.LastError.Op != domain.CallTerminate {
		t.Fatalf("after the failure: %+v last error %+v", after, after.LastError)
	}
	// Nothing left blocks the next try.
	if out, err := e.svc.Terminate(ctx, c.Key(), "", "customer asked"); err != nil || out.State != domain.StateTerminated {
		t.Fatalf("second try: %v %+v", err, out)
	}
}

func TestAPanicMidTerminateReleasesTheLeaseAndTheMark(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, time.Minute, 300*time.Millisecond)
	c := e.signed("t-panic")
	e.wx.Before(func(op string) {
		if op == "terminate" {
			panic("simulated bug in the WeChat call")
		}
	})
	panicked := func() (p any) {
		defer func() { p = recover() }()
		_, _ = e.svc.Terminate(ctx, c.Key(), "", "customer asked")
		return nil
	}()
	if panicked == nil {
		t.Fatal("the panic did not reach the caller")
	}
	after := e.waitFor("t-panic", func(domain.Contract) bool { return true })
	if after.LeaseToken != "" || after.OpsTermination != nil || after.LastError == nil || after.LastError.Code != "INTERNAL" {
		t.Fatalf("after the panic the lease (a minute long) or the mark stayed: %+v", after)
	}
}

func TestTerminateSyncAndReconcileOfAContractWithoutServiceID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, time.Second, 300*time.Millisecond)
	past := e.clock.Now().Add(-time.Hour)
	soon := e.clock.Now().Add(time.Hour)
	for _, c := range []domain.Contract{
		{OutContractCode: "no-service-signed", Product: domain.ProductPasswordExempt, Channel: domain.ChannelMiniProgram,
			State: domain.StateSigned, ContractID: "wx-no-service"},
		{OutContractCode: "no-service-open", Product: domain.ProductPasswordExempt, Channel: domain.ChannelMiniProgram,
			State: domain.StateSessionIssued, SessionID: "s", SessionExpiresAt: &soon, NextCheckAt: &past},
	} {
		if _, err := e.store.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	key := domain.Key{OutContractCode: "no-service-signed"}
	for name, call := range map[string]func() error{
		"terminate": func() error { _, err := e.svc.Terminate(ctx, key, "", "customer asked"); return err },
		"sync":      func() error { _, err := e.svc.Sync(ctx, key, ""); return err },
	} {
		err := call()
		var de *domain.Error
		if !domain.IsCode(err, domain.CodeInvalidState) || !asDomain(err, &de) || len(de.Fields) != 1 || de.Fields[0].Field != "service_id" {
			t.Fatalf("%s: %v, want INVALID_STATE naming service_id", name, err)
		}
	}
	n, err := e.svc.Reconcile(ctx)
	if err != nil || n != 1 {
		t.Fatalf("reconcile: %d %v", n, err)
	}
	if got := e.metric("contractd_reconcile_skipped_total", map[string]string{"missing": "service_id"}); got != 1 {
		t.Fatalf("skips counted %v, want 1", got)
	}
	if calls := e.wx.Calls("terminate") + e.wx.Calls("query"); calls != 0 {
		t.Fatalf("%d WeChat calls for contracts WeChat cannot be asked about", calls)
	}
	if c := e.waitFor("no-service-signed", func(domain.Contract) bool { return true }); c.LeaseToken != "" || c.OpsTermination != nil {
		t.Fatalf("the refused terminate left a lease or a mark: %+v", c)
	}
}

func asDomain(err error, de **domain.Error) bool {
	e, ok := err.(*domain.Error)
	*de = e
	return ok
}
