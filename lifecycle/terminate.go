package lifecycle

import (
	"context"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/wechatpay"
)

// Terminate ends a signed contract through WeChat's terminate API (source
// ops). It is single-flight and idempotent: the caller that takes the
// contract's lease (domain.Contract.BeginTermination) makes the one call to
// WeChat; concurrent callers, on any replica, wait for its outcome (at most
// PresignWait, then IN_PROGRESS); and every caller whose contract ends
// terminated answers with it, whoever's call or WeChat notification ended
// it. When WeChat answers that the contract does not exist (a terminate
// already reached it: a holder that died mid-call, or the user), WeChat is
// asked what the contract is and its word is applied. On every failure the
// lease and the operator's mark are released and the failure recorded as
// the contract's last error. actor names the operator who asked ("" for an
// unnamed one); the history and the contract's termination mark record
// them.
func (s *Service) Terminate(ctx context.Context, key domain.Key, actor, note string) (domain.Contract, error) {
	if err := domain.CheckTerminationNote(note); err != nil {
		return domain.Contract{}, err
	}
	c, err := s.store.Get(ctx, key)
	if err != nil {
		return c, err
	}
	if c.State == domain.StateSigned && c.MissingForTerminate() == "contract_id" && c.MissingForQuery() == "" {
		// WeChat's contract id comes with its sign notification; when that
		// was missed, WeChat's query tells it.
		if c, err = s.syncContract(ctx, c, domain.SourceReconcile, actor); err != nil {
			return c, err
		}
	}
	since := s.opt.Now()
	deadline := since.Add(s.opt.PresignWait)
	waited := false
	for {
		var plan domain.TerminationPlan
		c, err := s.update(ctx, key, func(c *domain.Contract) error {
			var err error
			plan, err = c.BeginTermination(actor, note, s.opt.Now(), s.opt.LeaseTTL, since)
			return err
		})
		if err != nil {
			return c, err
		}
		if waited && plan.Step != domain.TerminationWait {
			s.metrics.waits.WithLabelValues("terminate", "served").Inc()
		}
		switch plan.Step {
		case domain.TerminationDone:
			return c, nil
		case domain.TerminationCall:
			return s.callTerminate(ctx, c, actor, note, plan)
		}
		if !s.opt.Now().Before(deadline) {
			s.metrics.waits.WithLabelValues("terminate", "in_progress").Inc()
			return c, domain.InProgress("a terminate", key, plan.Wait.LeaseLeft)
		}
		waited = true
		if err := s.awaitLease(ctx, key, deadline); err != nil {
			return c, err
		}
	}
}

// callTerminate makes the terminate call while holding (and renewing) the
// lease, then records the outcome.
func (s *Service) callTerminate(ctx context.Context, c domain.Contract, actor, note string, plan domain.TerminationPlan) (domain.Contract, error) {
	key, token := c.Key(), plan.Token
	stop := s.holdLease(ctx, key, token)
	finished := false
	defer func() {
		stop()
		if !finished {
			// A panic (or a path that forgot): release the lease and the
			// operator's mark rather than leave them to lapse.
			_, _ = s.saveOutcome(ctx, key, func(c *domain.Contract) error {
				c.FailTermination(token, domain.CallError{Code: "INTERNAL", Message: "the terminate stopped unexpectedly", At: s.opt.Now()})
				return nil
			})
		}
	}()
	details := map[string]any{"note": note}
	if actor != "" {
		details["actor"] = actor
	}
	if plan.TookOver {
		details["took_over_lapsed_lease"] = true
	}
	ch := domain.Change{Event: domain.EventTerminate, Source: domain.SourceOps, OccurredAt: s.opt.Now(),
		TerminationMode: "MERCHANT", Details: details}
	callErr := s.withRetry(ctx, "terminate", func() error { return s.terminateAtWeChat(ctx, c, note) })
	if notExist(callErr) {
		// WeChat no longer has the contract as signed: ask what it is.
		remote, qerr := s.queryWeChat(ctx, c, domain.SourceReconcile)
		switch {
		case qerr != nil:
			callErr = qerr
		case remote != nil && remote.Event == domain.EventTerminate:
			ch, callErr = *remote, nil
			if actor != "" {
				ch.Details["actor"] = actor
			}
		}
	}
	if callErr != nil {
		finished = true
		if _, err := s.saveOutcome(ctx, key, func(c *domain.Contract) error {
			c.FailTermination(token, callError(callErr, s.opt.Now()))
			return nil
		}); err != nil {
			return c, err
		}
		if de, ok := callErr.(*domain.Error); ok {
			return c, de
		}
		return c, upstreamError(callErr)
	}
	out, err := s.saveOutcome(ctx, key, func(c *domain.Contract) error {
		_, err := c.FinishTermination(ctx, token, ch, s.opt.Now())
		return err
	})
	finished = true
	if domain.IsCode(err, domain.CodeUnavailable) {
		return c, &domain.Error{Code: domain.CodeUnavailable, RetryAfter: s.opt.LeaseTTL, Err: err,
			Message: "WeChat Pay terminated the contract but the database became unavailable before it was recorded; " +
				"WeChat's termination notification or a sync records it, still as this operator's",
			Detail: map[string]any{"wechat_terminated": true, "recorded": false}}
	}
	return out, err
}

// terminateAtWeChat makes one terminate call for c, which carries the
// identifiers the call needs (BeginTermination checked them).
func (s *Service) terminateAtWeChat(ctx context.Context, c domain.Contract, note string) error {
	if c.Product == domain.ProductPasswordExempt {
		err := s.wx.TerminateDomestic(ctx, *c.ServiceID, c.OutContractCode,
			wechatpay.DomesticTerminateRequest{ContractTerminationRemark: note, SubMchID: c.SubMchID})
		s.metrics.called("domestic_terminate", err)
		return err
	}
	req := wechatpay.GlobalTerminateRequest{TerminationNote: note}
	if s.opt.Mode == domain.ModeInstitutional {
		req.SpAppID, req.SubMchID, req.SubAppID = s.opt.SpAppID, c.SubMchID, c.PreSignRequest().SubAppID
	} else {
		req.AppID = s.opt.AppID
	}
	err := s.wx.TerminateGlobal(ctx, c.ContractID, req)
	s.metrics.called("global_terminate", err)
	return err
}
