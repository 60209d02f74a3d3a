package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/wechatpay"
)

// PreSignResult is what a pre-sign answers: the contract, the launch object
// the app hands the user to WeChat with, and whether a new session was
// opened (201) or an identical request found a valid one (200).
type PreSignResult struct {
	Contract domain.Contract
	Launch   json.RawMessage
	Created  bool
}

// PreSign starts or resumes a signing flow.
//
// The request is checked against every field rule before anything is stored
// or sent. Then, in one short transaction, the contract is created (or
// locked) and the domain decides (domain.Contract.BeginPreSign): an existing
// session answers, a refusal answers, another caller's lease means waiting
// for its outcome (at most PresignWait, then IN_PROGRESS), and otherwise this
// caller takes the lease. The call to WeChat happens outside any transaction
// while the lease is renewed; a second transaction records the session (or
// the failure) and releases the lease. However many identical requests come
// at once, from however many replicas, one session is opened. actor names
// the holder of the app token that asked ("" for an unnamed one): the
// history names them on what the pre-sign leads to (the sync after WeChat's
// CONTRACT_EXISTED).
func (s *Service) PreSign(ctx context.Context, req domain.PreSignRequest, actor string) (PreSignResult, error) {
	if err := req.Validate(s.opt.Mode, s.opt.Now()); err != nil {
		return PreSignResult{}, err
	}
	since := s.opt.Now()
	deadline := since.Add(s.opt.PresignWait)
	waited := false
	for {
		var plan domain.PreSignPlan
		c, err := s.updateOrCreate(ctx, domain.NewContract(req), func(c *domain.Contract) error {
			var err error
			plan, err = c.BeginPreSign(ctx, req, s.opt.Now(), s.opt.LeaseTTL, since)
			return err
		})
		if err != nil {
			return PreSignResult{}, err
		}
		if waited && plan.Step != domain.PreSignWait {
			s.metrics.waits.WithLabelValues("presign", "served").Inc()
		}
		switch plan.Step {
		case domain.PreSignReuse:
			return PreSignResult{Contract: c, Launch: c.Launch}, nil
		case domain.PreSignCall:
			return s.callAndFinish(ctx, req, c, plan, actor)
		}
		if !s.opt.Now().Before(deadline) {
			s.metrics.waits.WithLabelValues("presign", "in_progress").Inc()
			return PreSignResult{}, domain.InProgress("a pre-sign", c.Key(), plan.Wait.LeaseLeft)
		}
		waited = true
		if err := s.awaitLease(ctx, c.Key(), deadline); err != nil {
			return PreSignResult{}, err
		}
	}
}

// callAndFinish calls WeChat with retries while holding (and renewing) the
// lease, then records the outcome in a second transaction.
func (s *Service) callAndFinish(ctx context.Context, req domain.PreSignRequest, c domain.Contract, plan domain.PreSignPlan, actor string) (res PreSignResult, err error) {
	key, token := c.Key(), plan.Token
	stop := s.holdLease(ctx, key, token)
	finished := false
	defer func() {
		stop()
		if !finished {
			// A panic (or a path that forgot): give the lease back so the
			// next caller need not wait for it to lapse.
			_, _ = s.saveOutcome(ctx, key, func(c *domain.Contract) error {
				c.FailPreSign(token, domain.CallError{Code: "INTERNAL", Message: "the pre-sign stopped unexpectedly", At: s.opt.Now()})
				return nil
			})
		}
	}()
	now := s.opt.Now()
	expiresAt := req.SessionExpiry(now)
	var sess *domain.Session
	callErr := s.withRetry(ctx, "pre-sign", func() error {
		var err error
		sess, err = s.openSession(ctx, req, expiresAt)
		return err
	})
	if callErr != nil {
		finished = true
		if _, err := s.saveOutcome(ctx, key, func(c *domain.Contract) error {
			c.FailPreSign(token, callError(callErr, s.opt.Now()))
			return nil
		}); err != nil {
			return PreSignResult{}, lostByFailover(err, false)
		}
		var ae *wechatpay.APIError
		if errors.As(callErr, &ae) && ae.Code == "CONTRACT_EXISTED" {
			return PreSignResult{}, s.contractExisted(context.WithoutCancel(ctx), c, callErr, actor)
		}
		return PreSignResult{}, upstreamError(callErr)
	}
	details := map[string]any{sessionHandleName(req): sess.ID, "session_expires_at": sess.ExpiresAt, "channel": req.Channel}
	if plan.TookOver {
		// The lapsed holder may have opened a session WeChat cannot tell us
		// about: say so in the history.
		details["took_over_lapsed_lease"] = true
	}
	var outcome domain.PreSignOutcome
	saved, err := s.saveOutcome(ctx, key, func(c *domain.Contract) error {
		var err error
		outcome, err = c.FinishPreSign(ctx, token, req.Fingerprint(), sess, details, s.opt.Now())
		return err
	})
	finished = true
	if domain.IsCode(err, domain.CodeUnavailable) {
		return PreSignResult{}, &domain.Error{Code: domain.CodeUnavailable, RetryAfter: s.opt.LeaseTTL, Err: err,
			Message: "WeChat Pay opened a signing session but the database became unavailable before it was saved; " +
				"nothing else was written, the lease taken for the call lapses within the Retry-After time, and an identical retry then opens a new session",
			Detail: map[string]any{"session_opened": true, "session_saved": false}}
	}
	if err != nil {
		return PreSignResult{}, lostByFailover(err, true)
	}
	switch outcome {
	case domain.SessionFoundOther:
		return PreSignResult{Contract: saved, Launch: saved.Launch}, nil
	case domain.ContractSignedMeanwhile:
		return PreSignResult{}, domain.Errorf(domain.CodeExists, "contract %s was %s by WeChat while its pre-sign ran; use a new out_contract_code", key, saved.State)
	}
	return PreSignResult{Contract: saved, Launch: saved.Launch, Created: true}, nil
}

// lostByFailover turns CONTRACT_NOT_EXIST from saving a pre-sign's outcome
// into UNAVAILABLE: the contract and its lease were committed by the
// pre-sign's first transaction, and history is never deleted, so the row can
// only be gone because a database failover lost that transaction (the
// promoted standby never had it). Nothing of the pre-sign is left: an
// identical retry creates the contract again (and opens a new session when
// one was opened). Any other error is returned as it is.
func lostByFailover(err error, sessionOpened bool) error {
	if !domain.IsCode(err, domain.CodeNotFound) {
		return err
	}
	msg := "the database lost this contract while its pre-sign ran (a failover to a standby that lacked its first transaction); nothing of it is left, and an identical retry creates it again"
	if sessionOpened {
		msg = "WeChat Pay opened a signing session, but " + msg + " and opens a new session"
	}
	return &domain.Error{Code: domain.CodeUnavailable, RetryAfter: time.Second, Err: err, Message: msg,
		Detail: map[string]any{"session_opened": sessionOpened, "session_saved": false}}
}

// callError describes a failed call to WeChat for the contract's last_error.
func callError(err error, at time.Time) domain.CallError {
	ce := domain.CallError{Code: "UNKNOWN", Message: err.Error(), At: at, Retryable: wechatpay.IsRetryable(err)}
	var ae *wechatpay.APIError
	if errors.As(err, &ae) {
		ce.Code, ce.Message = ae.Code, ae.Message
	}
	return ce
}

// contractExisted handles WeChat's CONTRACT_EXISTED: WeChat knows a signed
// contract we did not. Ask WeChat what it is, apply that, and answer
// CONTRACT_EXISTED.
func (s *Service) contractExisted(ctx context.Context, c domain.Contract, callErr error, actor string) error {
	if _, err := s.syncContract(ctx, c, domain.SourceReconcile, actor); err != nil {
		s.log.WarnContext(ctx, "query after CONTRACT_EXISTED failed", "contract", c.Key().String(), "error", err.Error())
	}
	return &domain.Error{Code: domain.CodeExists, Message: "WeChat Pay already has a signed contract " + c.OutContractCode + "; use a new out_contract_code",
		Detail: map[string]any{"wechat_code": "CONTRACT_EXISTED"}, Err: callErr}
}

// sessionHandleName names, in the history's details, what identifies a
// session WeChat opened for req: WeChat's session_id for app and mini
// program sessions, pre_entrustweb_id for password-exempt ones, and for h5,
// jsapi and web the URL WeChat answers, which is the session's only handle
// (it is also what the contract keeps as its session id): sign_url for
// the redirect channels, qr_code_url for web.
func sessionHandleName(req domain.PreSignRequest) string {
	switch {
	case req.Product == domain.ProductPasswordExempt:
		return "pre_entrustweb_id"
	case req.Channel == domain.ChannelH5 || req.Channel == domain.ChannelJSAPI:
		return "sign_url"
	case req.Channel == domain.ChannelWeb:
		return "qr_code_url"
	}
	return "session_id"
}

// openSession makes one pre-sign call and builds the session and launch
// object from WeChat's answer.
func (s *Service) openSession(ctx context.Context, req domain.PreSignRequest, expiresAt time.Time) (*domain.Session, error) {
	if req.Product == domain.ProductPasswordExempt {
		return s.openDomestic(ctx, req, expiresAt)
	}
	body := wechatpay.GlobalPreSignRequest{
		PlanID: *req.PlanID, OutContractCode: req.OutContractCode, UserDisplayName: req.UserDisplayName,
		SuccessNotifyURL: s.opt.NotifyURL, OpenID: req.OpenID, UserClientIP: req.UserClientIP,
		ReturnURL: req.ReturnURL, ReturnAppID: req.ReturnAppID, ExpiredTime: req.ExpiredTime,
	}
	if s.opt.Mode == domain.ModeInstitutional {
		body.SpAppID, body.SubMchID, body.SubAppID = s.opt.SpAppID, req.SubMchID, req.SubAppID
	} else {
		body.AppID = s.opt.AppID
	}
	resp, err := s.wx.GlobalPreSign(ctx, wechatpay.Channel(req.Channel), body)
	s.metrics.called("global_presign", err)
	if err != nil {
		return nil, err
	}
	var launch any
	id := resp.SessionID
	switch req.Channel {
	case domain.ChannelApp:
		launch = map[string]string{"type": "app_sdk", "business_type": "wxpayOverseaEntrustAuthorization",
			"query": "sessionId=" + resp.SessionID, "ext_info": `{"miniProgramType":0}`}
	case domain.ChannelMiniProgram:
		launch = map[string]string{"type": "mini_program_session", "session_id": resp.SessionID}
	case domain.ChannelH5, domain.ChannelJSAPI:
		id = resp.URL()
		launch = map[string]string{"type": "redirect", "url": id}
	case domain.ChannelWeb:
		id = resp.URL()
		launch = map[string]string{"type": "qr_code", "url": id}
	}
	if id == "" {
		return nil, &wechatpay.APIError{Op: "global pre-sign", Code: wechatpay.CodeInvalidResponse, Message: "the answer carries no session"}
	}
	raw, _ := json.Marshal(launch)
	return &domain.Session{ID: id, ExpiresAt: expiresAt, Launch: raw}, nil
}

func (s *Service) openDomestic(ctx context.Context, req domain.PreSignRequest, expiresAt time.Time) (*domain.Session, error) {
	body := wechatpay.DomesticPreSignRequest{
		ServiceID: *req.ServiceID, OutContractCode: req.OutContractCode, NotifyURL: s.opt.NotifyURL,
		ContractDisplayAccount: req.ContractDisplayAccount,
	}
	if s.opt.Mode == domain.ModeInstitutional {
		body.SpAppID, body.SpOpenID, body.SubMchID, body.SubAppID, body.SubOpenID = s.opt.SpAppID, req.OpenID, req.SubMchID, req.SubAppID, req.SubOpenID
	} else {
		body.AppID, body.OpenID = s.opt.AppID, req.OpenID
	}
	resp, err := s.wx.DomesticPreSign(ctx, s.opt.PasswordExemptVariant, body)
	s.metrics.called("domestic_presign", err)
	if err != nil {
		return nil, err
	}
	if resp.PreEntrustwebID == "" {
		return nil, &wechatpay.APIError{Op: "domestic pre-sign", Code: wechatpay.CodeInvalidResponse, Message: "the answer carries no pre_entrustweb_id"}
	}
	raw, _ := json.Marshal(map[string]string{"type": "mini_program", "appid": resp.SignMpAppID,
		"path": resp.SignMpPath, "pre_entrustweb_id": resp.PreEntrustwebID})
	return &domain.Session{ID: resp.PreEntrustwebID, ExpiresAt: expiresAt, Launch: raw}, nil
}
