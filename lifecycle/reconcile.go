package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/store"
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

// storedRequest recovers the pre-sign parameters a contract was opened with.
func storedRequest(c domain.Contract) domain.PreSignRequest {
	var r domain.PreSignRequest
	if len(c.Params) > 0 {
		_ = json.Unmarshal(c.Params, &r) // written by us from this very type
	}
	return r
}

// queryWeChat asks WeChat for a contract's state and returns the event it
// amounts to, or nil when WeChat knows no signed or terminated contract.
func (s *Service) queryWeChat(ctx context.Context, c domain.Contract, src domain.Source) (*domain.Change, error) {
	if c.Product == domain.ProductPasswordExempt {
		return s.queryDomestic(ctx, c, src)
	}
	q := wechatpay.GlobalQuery{}
	if s.opt.Mode == domain.ModeInstitutional {
		q.SpAppID, q.SubMchID, q.SubAppID = s.opt.SpAppID, c.SubMchID, storedRequest(c).SubAppID
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
	case c.PlanID != nil:
		q.PlanID = *c.PlanID
		err = s.withRetry(ctx, "global query", func() error {
			gc, err = s.wx.QueryGlobalByOutContractCode(ctx, c.OutContractCode, q)
			s.metrics.called("global_query", err)
			return err
		})
	default:
		return nil, domain.Errorf(domain.CodeInvalidState, "contract %s has neither a contract id nor a plan id to query by", c.Key())
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
	if c.ServiceID == nil {
		return nil, domain.Errorf(domain.CodeInvalidState, "contract %s has no service id to query by", c.Key())
	}
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
func (s *Service) syncContract(ctx context.Context, c domain.Contract, src domain.Source) (domain.Contract, error) {
	remote, err := s.queryWeChat(ctx, c, src)
	if err != nil {
		return c, err
	}
	if remote == nil {
		return s.store.Get(ctx, c.Key())
	}
	ch := *remote
	if ch.OccurredAt.IsZero() {
		ch.OccurredAt = s.opt.Now()
	}
	out, d, err := s.store.Transition(ctx, c.Key(), ch)
	if err == nil {
		s.metrics.decided(ch, d)
	}
	return out, err
}

// Sync asks WeChat for one contract's state now and applies it (source ops'
// on-demand reconcile).
func (s *Service) Sync(ctx context.Context, key domain.Key) (domain.Contract, error) {
	c, err := s.store.Get(ctx, key)
	if err != nil {
		return c, err
	}
	return s.syncContract(ctx, c, domain.SourceReconcile)
}

// Reconcile asks WeChat about sessions that have been open a while without a
// notification and about recently expired ones, and applies what it says
// (source reconcile). Contracts are claimed in a short transaction that also
// schedules their next check, so replicas never ask about one contract at
// once and a contract is asked about ever more rarely. It returns how many
// contracts it checked.
func (s *Service) Reconcile(ctx context.Context) (int, error) {
	var due []domain.Contract
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		var err error
		due, err = tx.ClaimReconcileDue(ctx, s.opt.Now(), s.opt.ReconcileMinAge, s.opt.ReconcileLookBack, s.opt.ReconcileFirstGap, s.opt.ReconcileBatch)
		return err
	})
	if err != nil {
		return 0, err
	}
	for _, c := range due {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if _, err := s.syncContract(ctx, c, domain.SourceReconcile); err != nil {
			s.log.WarnContext(ctx, "reconcile failed", "contract", c.Key().String(), "error", err.Error())
		}
	}
	return len(due), nil
}

// MaxTerminationNote is the longest termination note accepted.
const MaxTerminationNote = 120

// Terminate ends a signed contract through WeChat's terminate API and then
// records terminated (source ops). The termination notification WeChat
// sends afterwards is a repeat and changes nothing.
func (s *Service) Terminate(ctx context.Context, key domain.Key, note string) (domain.Contract, error) {
	if note == "" || utf8.RuneCountInString(note) > MaxTerminationNote {
		return domain.Contract{}, &domain.Error{Code: domain.CodeParamError, Message: "the request breaks field rules",
			Fields: []domain.FieldError{{Field: "note", Reason: "is required, at most 120 characters"}}}
	}
	c, err := s.store.Get(ctx, key)
	if err != nil {
		return c, err
	}
	if c.State == domain.StateSigned && c.Product == domain.ProductPapay && c.ContractID == "" {
		if c, err = s.syncContract(ctx, c, domain.SourceReconcile); err != nil {
			return c, err
		}
		if c.ContractID == "" {
			return c, domain.Errorf(domain.CodeInvalidState, "WeChat's contract id for %s is unknown", key)
		}
	}
	// Mark the termination as the operator's before asking WeChat: WeChat's
	// PAPAY.TERMINATE notification may land before its answer does.
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		cur, err := tx.Lock(ctx, key)
		if err != nil {
			return err
		}
		if cur.State != domain.StateSigned {
			return domain.Errorf(domain.CodeInvalidState, "only signed contracts can be terminated; %s is %s", key, cur.State)
		}
		cur.OpsTermination = &domain.OpsTermination{Note: note, RequestedAt: s.opt.Now()}
		c = cur
		return tx.Save(ctx, &cur, cur.Version)
	})
	if err != nil {
		return c, err
	}
	err = s.withRetry(ctx, "terminate", func() error {
		var err error
		if c.Product == domain.ProductPasswordExempt {
			err = s.wx.TerminateDomestic(ctx, *c.ServiceID, c.OutContractCode,
				wechatpay.DomesticTerminateRequest{ContractTerminationRemark: note, SubMchID: c.SubMchID})
			s.metrics.called("domestic_terminate", err)
			return err
		}
		req := wechatpay.GlobalTerminateRequest{TerminationNote: note}
		if s.opt.Mode == domain.ModeInstitutional {
			req.SpAppID, req.SubMchID, req.SubAppID = s.opt.SpAppID, c.SubMchID, storedRequest(c).SubAppID
		} else {
			req.AppID = s.opt.AppID
		}
		err = s.wx.TerminateGlobal(ctx, c.ContractID, req)
		s.metrics.called("global_terminate", err)
		return err
	})
	if err != nil {
		if ferr := s.release(context.WithoutCancel(ctx), key, "", err); ferr != nil {
			return c, ferr
		}
		return c, upstreamError(err)
	}
	ch := domain.Change{Event: domain.EventTerminate, Source: domain.SourceOps, OccurredAt: s.opt.Now(),
		TerminationMode: "MERCHANT", Details: map[string]any{"note": note}}
	out, d, err := s.store.Transition(context.WithoutCancel(ctx), key, ch)
	if err == nil {
		s.metrics.decided(ch, d)
	}
	return out, err
}
