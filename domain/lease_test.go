package domain

import (
	"context"
	"testing"
	"time"
)

var (
	t0  = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	ttl = 5 * time.Second
)

func papayRequest(code string) PreSignRequest {
	plan := int64(123)
	return PreSignRequest{Product: ProductPapay, Channel: ChannelApp, OutContractCode: code, PlanID: &plan,
		UserDisplayName: "Zhang San", ExpiredTime: t0.Add(time.Hour).Format(time.RFC3339)}
}

// stored returns c as the store would hand it over: read from a row, with
// no decisions taken yet.
func stored(c Contract) Contract {
	if c.Version == 0 {
		c.Version = 1
	}
	c.decided, c.dirty = nil, false
	return c
}

func leased(c Contract, token string, until time.Time) Contract {
	c.LeaseToken, c.LeaseExpiresAt = token, &until
	return stored(c)
}

func TestBeginPreSignDecides(t *testing.T) {
	req := papayRequest("c-1")
	other := papayRequest("c-1")
	other.UserDisplayName = "Li Si"
	fresh := stored(NewContract(req))
	validUntil := t0.Add(time.Hour)
	issued := fresh
	issued.State, issued.SessionExpiresAt, issued.SessionID = StateSessionIssued, &validUntil, "s-1"
	pastExpiry := issued
	passed := t0.Add(-time.Second)
	pastExpiry.SessionExpiresAt = &passed
	failedNow := fresh
	failedNow.LastError = &CallError{Code: "SYSTEM_ERROR", Message: "busy", At: t0, Op: CallPreSign}
	failedBefore := fresh
	failedBefore.LastError = &CallError{Code: "SYSTEM_ERROR", Message: "busy", At: t0.Add(-time.Minute), Op: CallPreSign}

	cases := []struct {
		name     string
		c        Contract
		req      PreSignRequest
		step     PreSignStep
		code     Code // refusal, when set
		tookOver bool
		expired  bool // an expire was decided on the spot
	}{
		{name: "new contract takes the lease", c: fresh, req: req, step: PreSignCall},
		{name: "a live lease means wait", c: leased(fresh, "other", t0.Add(2*time.Second)), req: req, step: PreSignWait},
		{name: "a lapsed lease is taken over", c: leased(fresh, "dead", t0.Add(-time.Millisecond)), req: req, step: PreSignCall, tookOver: true},
		{name: "valid session, same parameters", c: issued, req: req, step: PreSignReuse},
		{name: "valid session, other parameters", c: issued, req: other, code: CodeInvalidState},
		{name: "session past expiry is expired, then called", c: pastExpiry, req: req, step: PreSignCall, expired: true},
		{name: "signed", c: func() Contract { c := fresh; c.State = StateSigned; return c }(), req: req, code: CodeExists},
		{name: "terminated", c: func() Contract { c := fresh; c.State = StateTerminated; return c }(), req: req, code: CodeExists},
		{name: "an identical call failed while we waited", c: failedNow, req: req, code: CodeUpstream},
		{name: "an identical call failed before we came", c: failedBefore, req: req, step: PreSignCall},
		{name: "another call failed while we waited", c: failedNow, req: other, step: PreSignCall},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			before := c
			plan, err := c.BeginPreSign(context.Background(), tc.req, t0, ttl, t0)
			if tc.code != "" {
				if !IsCode(err, tc.code) {
					t.Fatalf("err %v, want %s", err, tc.code)
				}
				return
			}
			if err != nil || plan.Step != tc.step || plan.TookOver != tc.tookOver {
				t.Fatalf("plan %+v err %v, want step %d took over %v", plan, err, tc.step, tc.tookOver)
			}
			if tc.expired != (len(c.Pending()) == 1 && c.Pending()[0].Change.Event == EventExpire) {
				t.Fatalf("decided %+v, expire on the spot %v", c.Decided(), tc.expired)
			}
			switch plan.Step {
			case PreSignCall:
				if plan.Token == "" || c.LeaseToken != plan.Token || !c.LeaseHeld(t0) || !c.LeaseExpiresAt.Equal(t0.Add(ttl)) || !c.Dirty() {
					t.Fatalf("lease not taken: %+v", c)
				}
				if c.ParamsHash != tc.req.Fingerprint() {
					t.Fatal("the request's parameters were not recorded")
				}
			case PreSignWait:
				if plan.Wait.LeaseLeft != 2*time.Second || c.Dirty() || c.LeaseToken != before.LeaseToken {
					t.Fatalf("wait %+v, contract changed %v", plan.Wait, c.Dirty())
				}
			case PreSignReuse:
				if c.Dirty() {
					t.Fatal("reuse changed the contract")
				}
			}
		})
	}
}

func TestRenewLease(t *testing.T) {
	c := leased(NewContract(papayRequest("c")), "mine", t0.Add(time.Second))
	if err := c.RenewLease("mine", t0.Add(3*time.Second), ttl); err != nil || !c.LeaseExpiresAt.Equal(t0.Add(8*time.Second)) {
		t.Fatalf("renew by its holder (even after it lapsed, while nobody took it): %v %v", err, c.LeaseExpiresAt)
	}
	c = stored(c)
	if err := c.RenewLease("someone else", t0, ttl); !IsCode(err, CodeLeaseLost) || c.Dirty() {
		t.Fatalf("renew by a stranger: %v dirty %v", err, c.Dirty())
	}
	if err := c.RenewLease("", t0, ttl); !IsCode(err, CodeLeaseLost) {
		t.Fatalf("renew with no token: %v", err)
	}
}

func TestFinishAndFailPreSign(t *testing.T) {
	ctx := context.Background()
	req := papayRequest("c")
	fp := req.Fingerprint()
	holder := leased(NewContract(req), "mine", t0.Add(time.Second))
	sess := &Session{ID: "s-1", ExpiresAt: t0.Add(time.Hour), Launch: []byte(`{"type":"app_sdk"}`)}

	t.Run("holder records its session", func(t *testing.T) {
		c := holder
		out, err := c.FinishPreSign(ctx, "mine", fp, sess, map[string]any{"session_id": "s-1"}, t0)
		if err != nil || out != SessionOpened || c.State != StateSessionIssued || c.LeaseToken != "" || c.LeaseExpiresAt != nil {
			t.Fatalf("%v %v %+v", out, err, c)
		}
		if p := c.Pending(); len(p) != 1 || p[0].Change.Event != EventIssueSession || p[0].Change.Source != SourcePreSign {
			t.Fatalf("history %+v", p)
		}
	})
	t.Run("lost lease, the new holder's identical session answers", func(t *testing.T) {
		c := holder
		until := t0.Add(time.Hour)
		c.State, c.SessionID, c.SessionExpiresAt, c.LeaseToken, c.LeaseExpiresAt = StateSessionIssued, "s-0", &until, "", nil
		c = stored(c)
		out, err := c.FinishPreSign(ctx, "mine", fp, sess, nil, t0)
		if err != nil || out != SessionFoundOther || c.SessionID != "s-0" || c.Dirty() {
			t.Fatalf("%v %v %+v", out, err, c)
		}
	})
	t.Run("lost lease to an identical request still calling: first back is recorded", func(t *testing.T) {
		c := leased(holder, "theirs", t0.Add(time.Second))
		out, err := c.FinishPreSign(ctx, "mine", fp, sess, nil, t0)
		if err != nil || out != SessionOpened || c.State != StateSessionIssued || c.LeaseToken != "theirs" {
			t.Fatalf("%v %v %+v", out, err, c)
		}
	})
	t.Run("holder whose lapsed predecessor recorded an identical session meanwhile: that one answers", func(t *testing.T) {
		// The lease lapsed under the first holder, this caller took it
		// over, and the first holder's session came back and was recorded
		// while this caller's call ran (SessionOpened above, leaving our
		// lease alone). Ours must not apply issue_session a second time.
		c := holder
		until := t0.Add(time.Hour)
		c.State, c.SessionID, c.SessionExpiresAt = StateSessionIssued, "s-0", &until
		c = stored(c)
		out, err := c.FinishPreSign(ctx, "mine", fp, sess, nil, t0)
		if err != nil || out != SessionFoundOther || c.SessionID != "s-0" || c.LeaseToken != "" || len(c.Pending()) != 0 {
			t.Fatalf("%v %v %+v", out, err, c)
		}
	})
	t.Run("lost lease to a request with other parameters", func(t *testing.T) {
		c := leased(holder, "theirs", t0.Add(time.Second))
		c.ParamsHash = "other"
		if _, err := c.FinishPreSign(ctx, "mine", fp, sess, nil, t0); !IsCode(err, CodeInvalidState) || c.LeaseToken != "theirs" {
			t.Fatalf("%v %+v", err, c)
		}
	})
	t.Run("signed meanwhile: lease released, nothing else", func(t *testing.T) {
		c := holder
		c.State = StateSigned
		out, err := c.FinishPreSign(ctx, "mine", fp, sess, nil, t0)
		if err != nil || out != ContractSignedMeanwhile || c.LeaseToken != "" || c.State != StateSigned || len(c.Pending()) != 0 {
			t.Fatalf("%v %v %+v", out, err, c)
		}
	})
	t.Run("failure is recorded and the lease released", func(t *testing.T) {
		c := holder
		c.FailPreSign("mine", CallError{Code: "PARAM_ERROR", Message: "bad", At: t0})
		if c.LeaseToken != "" || c.LastError == nil || c.LastError.Op != CallPreSign || c.LastError.Code != "PARAM_ERROR" {
			t.Fatalf("%+v", c)
		}
	})
	t.Run("a stranger's failure changes nothing", func(t *testing.T) {
		c := holder
		c.FailPreSign("not mine", CallError{Code: "PARAM_ERROR", At: t0})
		if c.Dirty() || c.LastError != nil || c.LeaseToken != "mine" {
			t.Fatalf("%+v", c)
		}
	})
}

func signedContract(product Product) Contract {
	c := Contract{State: StateSigned, OutContractCode: "t", Product: product, ContractID: "wx-1", Version: 2}
	if product == ProductPasswordExempt {
		id := int64(7)
		c.ServiceID = &id
	}
	return stored(c)
}

func TestBeginTerminationDecides(t *testing.T) {
	noService := signedContract(ProductPasswordExempt)
	noService.ServiceID = nil
	noContractID := signedContract(ProductPapay)
	noContractID.ContractID = ""
	failedNow := signedContract(ProductPapay)
	failedNow.LastError = &CallError{Code: "SYSTEM_ERROR", At: t0, Op: CallTerminate}
	presignFailed := signedContract(ProductPapay)
	presignFailed.LastError = &CallError{Code: "SYSTEM_ERROR", At: t0, Op: CallPreSign}
	cases := []struct {
		name     string
		c        Contract
		step     TerminationStep
		code     Code
		field    string
		tookOver bool
	}{
		{name: "signed papay", c: signedContract(ProductPapay), step: TerminationCall},
		{name: "signed password-exempt", c: signedContract(ProductPasswordExempt), step: TerminationCall},
		{name: "terminated already: done", c: func() Contract { c := signedContract(ProductPapay); c.State = StateTerminated; return c }(), step: TerminationDone},
		{name: "session issued", c: func() Contract { c := signedContract(ProductPapay); c.State = StateSessionIssued; return c }(), code: CodeInvalidState},
		{name: "password-exempt without service_id", c: noService, code: CodeInvalidState, field: "service_id"},
		{name: "papay without contract_id", c: noContractID, code: CodeInvalidState, field: "contract_id"},
		{name: "another terminate under way", c: leased(signedContract(ProductPapay), "other", t0.Add(time.Second)), step: TerminationWait},
		{name: "a dead terminate's lease", c: leased(signedContract(ProductPapay), "dead", t0.Add(-time.Second)), step: TerminationCall, tookOver: true},
		{name: "a terminate failed while we waited", c: failedNow, code: CodeUpstream},
		{name: "a pre-sign's old failure is not shared", c: presignFailed, step: TerminationCall},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			plan, err := c.BeginTermination("", "customer asked", t0, ttl, t0)
			if tc.code != "" {
				var de *Error
				if !IsCode(err, tc.code) {
					t.Fatalf("err %v, want %s", err, tc.code)
				}
				if tc.field != "" && (!asError(err, &de) || len(de.Fields) != 1 || de.Fields[0].Field != tc.field) {
					t.Fatalf("err %v does not name %s", err, tc.field)
				}
				if c.Dirty() {
					t.Fatal("a refusal changed the contract")
				}
				return
			}
			if err != nil || plan.Step != tc.step || plan.TookOver != tc.tookOver {
				t.Fatalf("plan %+v err %v", plan, err)
			}
			if plan.Step == TerminationCall {
				if c.LeaseToken != plan.Token || c.OpsTermination == nil || c.OpsTermination.Note != "customer asked" || !c.OpsTermination.RequestedAt.Equal(t0) {
					t.Fatalf("lease and mark not set: %+v", c)
				}
			} else if c.Dirty() {
				t.Fatal("waiting or done changed the contract")
			}
		})
	}
}

func TestFinishAndFailTermination(t *testing.T) {
	ctx := context.Background()
	marked := func(token string) Contract {
		c := leased(signedContract(ProductPapay), token, t0.Add(time.Second))
		c.OpsTermination = &OpsTermination{Note: "customer asked", RequestedAt: t0}
		return c
	}
	ours := Change{Event: EventTerminate, Source: SourceOps, OccurredAt: t0, TerminationMode: "MERCHANT", Details: map[string]any{"note": "customer asked"}}
	queried := Change{Event: EventTerminate, Source: SourceReconcile, OccurredAt: t0, TerminationMode: "MERCHANT", Details: map[string]any{}}

	t.Run("our call ended it", func(t *testing.T) {
		c := marked("mine")
		d, err := c.FinishTermination(ctx, "mine", ours, t0)
		if err != nil || d.Outcome != OutcomeApply || c.State != StateTerminated || c.LeaseToken != "" || c.OpsTermination != nil {
			t.Fatalf("%+v %v %+v", d, err, c)
		}
	})
	t.Run("WeChat's query says it ended: still the operator's", func(t *testing.T) {
		c := marked("mine")
		if _, err := c.FinishTermination(ctx, "mine", queried, t0); err != nil {
			t.Fatal(err)
		}
		p := c.Pending()
		if len(p) != 1 || p[0].Change.Source != SourceOps || p[0].Change.Details["note"] != "customer asked" || p[0].Change.Details["reported_by"] != "reconcile" {
			t.Fatalf("history %+v", p)
		}
		// WeChat's report still moves the last operate time it knows.
		if c.LastOperateTime == nil || !c.LastOperateTime.Equal(t0) {
			t.Fatalf("LastOperateTime %v after WeChat's report attributed to ops, want %v", c.LastOperateTime, t0)
		}
		if p[0].Key != c.Key() {
			t.Fatalf("record key %v, want %v", p[0].Key, c.Key())
		}
	})
	t.Run("the notification was first: a repeat, lease and mark go", func(t *testing.T) {
		c := marked("mine")
		c.State, c.OpsTermination = StateTerminated, &OpsTermination{Note: "customer asked", RequestedAt: t0}
		d, err := c.FinishTermination(ctx, "mine", ours, t0)
		if err != nil || d.Outcome != OutcomeRepeat || c.LeaseToken != "" || c.OpsTermination != nil || len(c.Pending()) != 0 || !c.Dirty() {
			t.Fatalf("%+v %v %+v", d, err, c)
		}
	})
	t.Run("failure releases the lease and the mark", func(t *testing.T) {
		c := marked("mine")
		c.FailTermination("mine", CallError{Code: "SYSTEM_ERROR", At: t0})
		if c.LeaseToken != "" || c.OpsTermination != nil || c.LastError == nil || c.LastError.Op != CallTerminate || c.State != StateSigned {
			t.Fatalf("%+v", c)
		}
	})
	t.Run("a stranger's failure leaves the holder's lease and mark", func(t *testing.T) {
		c := marked("theirs")
		c.FailTermination("mine", CallError{Code: "SYSTEM_ERROR", At: t0})
		if c.Dirty() || c.LeaseToken != "theirs" || c.OpsTermination == nil {
			t.Fatalf("%+v", c)
		}
	})
}

func TestInProgressRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		left, want time.Duration
	}{{0, time.Second}, {300 * time.Millisecond, time.Second}, {time.Second, time.Second}, {1100 * time.Millisecond, 2 * time.Second}, {4500 * time.Millisecond, 5 * time.Second}} {
		if got := InProgress("a pre-sign", Key{OutContractCode: "c"}, tc.left).RetryAfter; got != tc.want {
			t.Errorf("lease left %s: Retry-After %s, want %s", tc.left, got, tc.want)
		}
	}
}
