package lifecycle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/store"
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

// step is what one look at the stored contract tells a pre-sign to do.
type step int

const (
	stepReuse step = iota + 1 // answer with the stored session
	stepWait                  // another call to WeChat is under way: wait for it
	stepCall                  // we hold the claim: call WeChat
)

// PreSign starts or resumes a signing flow.
//
// The request is checked against every field rule before anything is stored
// or sent. Then, in one short transaction, the contract is created (or
// locked) and the domain's state decides: signed and terminated answer
// CONTRACT_EXISTED; a valid session answers itself (same parameters) or
// INVALID_STATE (different ones); a session past its expiry is expired on
// the spot; otherwise the caller takes the contract's claim and commits.
// The call to WeChat happens outside any transaction; concurrent identical
// requests see the claim and wait for its outcome instead of calling WeChat
// themselves, so one session is opened however many ask at once. A second
// transaction applies issue_session, or records last_error, and releases
// the claim.
func (s *Service) PreSign(ctx context.Context, req domain.PreSignRequest) (PreSignResult, error) {
	if err := req.Validate(s.opt.Mode, s.opt.Now()); err != nil {
		return PreSignResult{}, err
	}
	fp := req.Fingerprint()
	params, _ := json.Marshal(req) // a struct of strings and ints always marshals
	waitStart := s.opt.Now()
	for wait := 10 * time.Millisecond; ; wait = min(wait*2, 200*time.Millisecond) {
		c, st, token, err := s.claim(ctx, req, fp, params, waitStart)
		if err != nil {
			return PreSignResult{}, err
		}
		switch st {
		case stepReuse:
			return PreSignResult{Contract: c, Launch: c.Launch}, nil
		case stepWait:
			if err := sleep(ctx, wait); err != nil {
				return PreSignResult{}, &domain.Error{Code: domain.CodeUnavailable,
					Message: "gave up waiting for a concurrent pre-sign of the same contract", Err: err}
			}
			continue
		}
		return s.callAndFinish(ctx, req, c, token)
	}
}

// claim looks at the stored contract in one transaction and decides the
// next step; for stepCall it has taken the claim under a fresh token.
func (s *Service) claim(ctx context.Context, req domain.PreSignRequest, fp string, params json.RawMessage, waitStart time.Time) (domain.Contract, step, string, error) {
	var (
		out   domain.Contract
		next  step
		token string
	)
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		now := s.opt.Now()
		c, _, err := tx.InsertOrLock(ctx, newContract(req, fp, params))
		if err != nil {
			return err
		}
		switch c.State {
		case domain.StateSigned, domain.StateTerminated:
			return domain.Errorf(domain.CodeExists, "contract %s is already %s; use a new out_contract_code", c.Key(), c.State)
		case domain.StateSessionIssued:
			if c.SessionValid(now) {
				if c.ParamsHash != fp {
					return domain.Errorf(domain.CodeInvalidState, "contract %s has a valid session opened with different parameters", c.Key())
				}
				out, next = c, stepReuse
				return nil
			}
			// The session passed its expiry before the sweeper saw it.
			ch := domain.Change{Event: domain.EventExpire, Source: domain.SourcePreSign, OccurredAt: now,
				Details: map[string]any{"reason": "session expired before a new pre-sign", "session_expires_at": c.SessionExpiresAt}}
			d, err := tx.Apply(ctx, &c, ch)
			if err != nil {
				return err
			}
			s.metrics.decided(ch, d)
		}
		if c.Claimed(now) {
			out, next = c, stepWait
			return nil
		}
		if c.LastError != nil && c.ParamsHash == fp && !c.LastError.At.Before(waitStart) {
			// We waited for an identical call and it failed: share its answer
			// rather than calling WeChat again at once.
			return lastCallError(c.LastError)
		}
		token = newToken()
		expires := now.Add(s.claimTTL())
		applyParams(&c, req, fp, params)
		c.ClaimToken, c.ClaimExpiresAt = token, &expires
		if err := tx.Save(ctx, &c, c.Version); err != nil {
			return err
		}
		out, next = c, stepCall
		return nil
	})
	return out, next, token, err
}

func lastCallError(e *domain.CallError) error {
	return &domain.Error{Code: domain.CodeUpstream, Message: "WeChat Pay answered " + e.Code + ": " + e.Message,
		Detail: map[string]any{"wechat_code": e.Code, "wechat_message": e.Message, "retryable": e.Retryable}}
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newContract(req domain.PreSignRequest, fp string, params json.RawMessage) domain.Contract {
	c := domain.Contract{State: domain.StateCreated, SubMchID: req.SubMchID, OutContractCode: req.OutContractCode}
	applyParams(&c, req, fp, params)
	return c
}

// applyParams records the request's parameters on a contract that is about
// to get a new session.
func applyParams(c *domain.Contract, req domain.PreSignRequest, fp string, params json.RawMessage) {
	c.Product, c.Channel = req.Product, req.Channel
	c.PlanID, c.ServiceID = req.PlanID, req.ServiceID
	c.UserDisplayName, c.ContractDisplayAccount = req.UserDisplayName, req.ContractDisplayAccount
	if req.OpenID != "" {
		c.OpenID = req.OpenID
	}
	c.Params, c.ParamsHash = params, fp
}

// callAndFinish calls WeChat with retries while holding the claim, then
// records the outcome in a second transaction.
func (s *Service) callAndFinish(ctx context.Context, req domain.PreSignRequest, c domain.Contract, token string) (PreSignResult, error) {
	now := s.opt.Now()
	expiresAt := req.SessionExpiry(now)
	// The answer must reach the database even if the caller hangs up.
	finishCtx := context.WithoutCancel(ctx)
	var sess *domain.Session
	err := s.withRetry(ctx, "pre-sign", func() error {
		var err error
		sess, err = s.openSession(ctx, req, expiresAt)
		return err
	})
	if err != nil {
		var ae *wechatpay.APIError
		if errors.As(err, &ae) && ae.Code == "CONTRACT_EXISTED" {
			return PreSignResult{}, s.contractExisted(finishCtx, c, token, err)
		}
		if ferr := s.release(finishCtx, c.Key(), token, err); ferr != nil {
			return PreSignResult{}, ferr
		}
		return PreSignResult{}, upstreamError(err)
	}
	var res PreSignResult
	err = s.store.InTx(finishCtx, func(tx *store.Tx) error {
		cur, err := tx.Lock(finishCtx, c.Key())
		if err != nil {
			return err
		}
		if cur.ClaimToken != token {
			// Our claim lapsed and another caller moved on; what it stored
			// stands, and the session we were given is left unused.
			if cur.State == domain.StateSessionIssued && cur.ParamsHash == c.ParamsHash {
				res = PreSignResult{Contract: cur, Launch: cur.Launch}
				return nil
			}
			return domain.Errorf(domain.CodeInvalidState, "contract %s changed while WeChat was called", cur.Key())
		}
		cur.ClaimToken, cur.ClaimExpiresAt = "", nil
		ch := domain.Change{Event: domain.EventIssueSession, Source: domain.SourcePreSign, OccurredAt: s.opt.Now(),
			Session: sess, Details: map[string]any{"session_id": sess.ID, "session_expires_at": sess.ExpiresAt, "channel": req.Channel}}
		d, err := tx.Apply(finishCtx, &cur, ch)
		if err != nil {
			return err
		}
		s.metrics.decided(ch, d)
		res = PreSignResult{Contract: cur, Launch: cur.Launch, Created: true}
		return nil
	})
	return res, err
}

// release records a failed call to WeChat as the contract's last_error and
// gives back what the call held: the pre-sign claim named by token, or
// (token "") an operator's pending termination. The state stays as it was.
func (s *Service) release(ctx context.Context, key domain.Key, token string, callErr error) error {
	return s.store.InTx(ctx, func(tx *store.Tx) error {
		cur, err := tx.Lock(ctx, key)
		if err != nil {
			return err
		}
		if cur.ClaimToken != token {
			return nil
		}
		if token == "" {
			cur.OpsTermination = nil
		}
		ce := &domain.CallError{Code: "UNKNOWN", Message: callErr.Error(), At: s.opt.Now(), Retryable: wechatpay.IsRetryable(callErr)}
		var ae *wechatpay.APIError
		if errors.As(callErr, &ae) {
			ce.Code, ce.Message = ae.Code, ae.Message
		}
		cur.ClaimToken, cur.ClaimExpiresAt, cur.LastError = "", nil, ce
		return tx.Save(ctx, &cur, cur.Version)
	})
}

// contractExisted handles WeChat's CONTRACT_EXISTED: WeChat knows a signed
// contract we did not. Ask WeChat what it is, apply that, and answer
// CONTRACT_EXISTED.
func (s *Service) contractExisted(ctx context.Context, c domain.Contract, token string, callErr error) error {
	if err := s.release(ctx, c.Key(), token, callErr); err != nil {
		return err
	}
	if _, err := s.syncContract(ctx, c, domain.SourceReconcile); err != nil {
		s.log.WarnContext(ctx, "query after CONTRACT_EXISTED failed", "contract", c.Key().String(), "error", err.Error())
	}
	return &domain.Error{Code: domain.CodeExists, Message: "WeChat Pay already has a signed contract " + c.OutContractCode + "; use a new out_contract_code",
		Detail: map[string]any{"wechat_code": "CONTRACT_EXISTED"}, Err: callErr}
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
