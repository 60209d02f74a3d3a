package lifecycle

import (
	"context"
	"errors"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/wechatpay"
)

// withRetry runs call until it succeeds, fails for good, or has been tried
// Attempts times, pausing with jittered exponential back-off between tries.
func (s *Service) withRetry(ctx context.Context, what string, call func() error) error {
	for attempt := 1; ; attempt++ {
		err := call()
		if err == nil || !wechatpay.IsRetryable(err) || attempt >= s.opt.Attempts {
			return err
		}
		s.log.WarnContext(ctx, "retrying WeChat Pay call", "call", what, "attempt", attempt, "error", err.Error())
		if serr := sleep(ctx, s.backoff(attempt)); serr != nil {
			return err
		}
	}
}

// queryWeChat asks WeChat for a contract's state and returns the event it
// amounts to, or nil when WeChat knows no signed or terminated contract.
func (s *Service) queryWeChat(ctx context.Context, c domain.Contract, src domain.Source) (*domain.Change, error) {
	if field := c.MissingForQuery(); field != "" {
		return nil, c.MissingError("query", field)
	}
	if c.Product == domain.ProductPasswordExempt {
		return s.queryDomestic(ctx, c, src)
	}
	q := wechatpay.GlobalQuery{}
	if s.opt.Mode == domain.ModeInstitutional {
		q.SpAppID, q.SubMchID, q.SubAppID = s.opt.SpAppID, c.SubMchID, c.PreSignRequest().SubAppID
	} else {
		q.AppID = s.opt.AppID
	}
	var (
		gc  *wechatpay.GlobalContract
		err error
	)
	switch {
	case c.ContractID != "":
		err = s.withRetry(ctx, "global query", func() error {
			gc, err = s.wx.QueryGlobalByContractID(ctx, c.ContractID, q)
			s.metrics.called("global_query", err)
			return err
		})
	default:
		q.PlanID = *c.PlanID
		err = s.withRetry(ctx, "global query", func() error {
			gc, err = s.wx.QueryGlobalByOutContractCode(ctx, c.OutContractCode, q)
			s.metrics.called("global_query", err)
			return err
		})
	}
	if notExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, upstreamError(err)
	}
	ev := wechatpay.ContractEvent{Family: wechatpay.FamilyGlobal, ContractID: gc.ContractID, OpenID: gc.OpenID,
		PlanID: gc.PlanID, TerminationMode: gc.TerminationMode, TerminationNote: gc.TerminationNote}
	switch gc.State {
	case "SIGNED":
		ev.Kind, ev.OperateTime = wechatpay.EventSign, parseTime(gc.SignedTime)
	case "TERMINATED":
		ev.Kind, ev.OperateTime = wechatpay.EventTerminate, parseTime(gc.TerminatedTime)
	default:
		return nil, nil
	}
	ch := changeFromEvent(ev, src)
	ch.Details["wechat_state"] = gc.State
	return &ch, nil
}

func (s *Service) queryDomestic(ctx context.Context, c domain.Contract, src domain.Source) (*domain.Change, error) {
	var (
		dc  *wechatpay.DomesticContract
		err error
	)
	err = s.withRetry(ctx, "domestic query", func() error {
		dc, err = s.wx.QueryDomestic(ctx, *c.ServiceID, c.OutContractCode, c.SubMchID)
		s.metrics.called("domestic_query", err)
		return err
	})
	if notExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, upstreamError(err)
	}
	ev := wechatpay.ContractEvent{Family: wechatpay.FamilyDomestic, ContractID: dc.ContractID, OpenID: dc.OpenID,
		ServiceID: dc.ServiceID, ContractState: dc.ContractState}
	switch dc.ContractState {
	case "SIGNED":
		ev.Kind, ev.OperateTime = wechatpay.EventSign, parseTime(dc.ContractSignedTime)
	case "TERMINATED":
		ev.Kind = wechatpay.EventTerminate
		if info := dc.ContractTerminateInfo; info != nil {
			ev.OperateTime, ev.TerminationMode, ev.TerminationNote = parseTime(info.ContractTerminatedTime), info.ContractTerminationMode, info.ContractTerminationRemark
		}
	default:
		return nil, nil
	}
	ch := changeFromEvent(ev, src)
	return &ch, nil
}

func notExist(err error) bool {
	var ae *wechatpay.APIError
	return errors.As(err, &ae) && (ae.Code == "CONTRACT_NOT_EXIST" || ae.Code == "RESOURCE_NOT_EXISTS" || ae.Code == "NOT_FOUND")
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// syncContract asks WeChat about c (read outside any transaction) and
// applies the answer in one transaction. WeChat is the source of truth for
// signed and terminated; an answer that says neither changes nothing.
// actor, when not empty, is the operator who asked; the history names them.
func (s *Service) syncContract(ctx context.Context, c domain.Contract, src domain.Source, actor string) (domain.Contract, error) {
	remote, err := s.queryWeChat(ctx, c, src)
	if err != nil {
		return c, err
	}
	if remote == nil {
		return s.store.Get(ctx, c.Key())
	}
	if actor != "" {
		// An operator's sync (or a terminate that asked WeChat first):
		// the history says who.
		remote.Details["actor"] = actor
	}
	return s.update(ctx, c.Key(), func(c *domain.Contract) error {
		_, err := c.Apply(ctx, *remote, s.opt.Now())
		return err
	})
}

// Sync asks WeChat for one contract's state now and applies it (source ops'
// on-demand reconcile). actor names the operator who asked ("" for an
// unnamed one); the history records them.
func (s *Service) Sync(ctx context.Context, key domain.Key, actor string) (domain.Contract, error) {
	c, err := s.store.Get(ctx, key)
	if err != nil {
		return c, err
	}
	return s.syncContract(ctx, c, domain.SourceReconcile, actor)
}

// Reconcile asks WeChat about sessions that have been open a while without a
// notification and about recently expired ones, and applies what it says
// (source reconcile). Contracts are claimed in a short transaction that also
// schedules their next check (domain.Contract.ScheduleCheck, persisted like
// any other change), so replicas never ask about one contract at once and a
// contract is asked about ever more rarely. It returns how many contracts it
// checked.
func (s *Service) Reconcile(ctx context.Context) (int, error) {
	now := s.opt.Now()
	due, err := s.store.ClaimReconcileDue(ctx, now, s.opt.ReconcileMinAge, s.opt.ReconcileLookBack, s.opt.ReconcileBatch,
		func(c *domain.Contract) error {
			c.ScheduleCheck(now, s.opt.ReconcileFirstGap)
			return nil
		})
	if err != nil {
		return 0, err
	}
	for _, p := range due {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if err := s.askWeChat(ctx, p.Contract, "reconcile"); err != nil {
			s.log.WarnContext(ctx, "reconcile failed", "contract", p.Contract.Key().String(), "error", err.Error())
		}
	}
	return len(due), nil
}

// askWeChat asks WeChat about a contract claimed for a check (by
// reconciliation or the healing, named by what) and applies its answer
// with source reconcile. A contract WeChat cannot be asked about is
// counted and logged as skipped, and answers nil.
func (s *Service) askWeChat(ctx context.Context, c domain.Contract, what string) error {
	if field := c.MissingForQuery(); field != "" {
		s.metrics.reconcileSkipped.WithLabelValues(field).Inc()
		s.log.WarnContext(ctx, what+" skipped a contract WeChat cannot be asked about", "contract", c.Key().String(), "missing", field)
		return nil
	}
	_, err := s.syncContract(ctx, c, domain.SourceReconcile, "")
	return err
}
