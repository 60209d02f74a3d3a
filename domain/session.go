package domain

import (
	"context"
	"encoding/json"
	"time"
)

// NewContract is the contract a first pre-sign for req creates: state
// created, the request's parameters, not stored yet.
func NewContract(req PreSignRequest) Contract {
	c := Contract{State: StateCreated, SubMchID: req.SubMchID, OutContractCode: req.OutContractCode}
	c.setParams(req)
	return c
}

// setParams records the request's parameters on a contract that is about to
// get a new session.
func (c *Contract) setParams(req PreSignRequest) {
	c.Product, c.Channel = req.Product, req.Channel
	c.PlanID, c.ServiceID = req.PlanID, req.ServiceID
	c.UserDisplayName, c.ContractDisplayAccount = req.UserDisplayName, req.ContractDisplayAccount
	if req.OpenID != "" {
		c.OpenID = req.OpenID
	}
	c.Params, _ = json.Marshal(req) // a struct of strings and ints always marshals
	c.ParamsHash = req.Fingerprint()
	c.dirty = true
}

// PreSignRequest returns the pre-sign request the contract's current
// session was asked for (the zero request for a contract first learned of
// from WeChat).
func (c *Contract) PreSignRequest() PreSignRequest {
	var r PreSignRequest
	if len(c.Params) > 0 {
		_ = json.Unmarshal(c.Params, &r) // written by setParams from this very type
	}
	return r
}

// PreSignStep is what a pre-sign is to do next.
type PreSignStep int

// The steps of a pre-sign.
const (
	// PreSignReuse: an identical request already opened a session that is
	// still valid; answer it.
	PreSignReuse PreSignStep = iota + 1
	// PreSignWait: another caller holds the lease and is calling WeChat;
	// wait for its outcome.
	PreSignWait
	// PreSignCall: the caller took the lease; call WeChat.
	PreSignCall
)

// PreSignPlan is BeginPreSign's decision.
type PreSignPlan struct {
	Step PreSignStep
	// Wait is set for PreSignWait.
	Wait Wait
	// Token holds the lease for PreSignCall; TookOver says it replaced a
	// holder whose lease had lapsed (whose session, if WeChat opened one, is
	// unknown to us).
	Token    string
	TookOver bool
}

// BeginPreSign decides what a pre-sign for req does to the contract at now.
// since is when the caller started (it may have waited since): a failure
// of an identical call recorded after it is shared rather than repeated at
// once. Signed and terminated contracts refuse with CONTRACT_EXISTED. A
// valid session answers itself when the parameters are the same and refuses
// with INVALID_STATE when they differ; a session past its expiry is expired
// on the spot (the sweeper may not have come yet). A lease held by another
// caller means wait. Otherwise the caller takes the lease for ttl and the
// request's parameters become the contract's.
func (c *Contract) BeginPreSign(ctx context.Context, req PreSignRequest, now time.Time, ttl time.Duration, since time.Time) (PreSignPlan, error) {
	fp := req.Fingerprint()
	switch c.State {
	case StateSigned, StateTerminated:
		return PreSignPlan{}, Errorf(CodeExists, "contract %s is already %s; use a new out_contract_code", c.Key(), c.State)
	case StateSessionIssued:
		if c.SessionValid(now) {
			if c.ParamsHash != fp {
				return PreSignPlan{}, Errorf(CodeInvalidState, "contract %s has a valid session opened with different parameters", c.Key())
			}
			return PreSignPlan{Step: PreSignReuse}, nil
		}
		ch := Change{Event: EventExpire, Source: SourcePreSign, OccurredAt: now,
			Details: map[string]any{"reason": "session expired before a new pre-sign", "session_expires_at": c.SessionExpiresAt}}
		if _, err := c.Apply(ctx, ch, now); err != nil {
			return PreSignPlan{}, err
		}
	}
	if c.LeaseHeld(now) {
		return PreSignPlan{Step: PreSignWait, Wait: Wait{LeaseLeft: c.LeaseLeft(now)}}, nil
	}
	if e := c.LastError; e != nil && e.Op == CallPreSign && c.ParamsHash == fp && !e.At.Before(since) {
		// We waited for an identical call and it failed: share its answer
		// rather than calling WeChat again at once.
		return PreSignPlan{}, e.Err()
	}
	token, tookOver := c.takeLease(now, ttl)
	c.setParams(req)
	return PreSignPlan{Step: PreSignCall, Token: token, TookOver: tookOver}, nil
}

// PreSignOutcome is what FinishPreSign came to.
type PreSignOutcome int

// The outcomes of finishing a pre-sign.
const (
	// SessionOpened: the session was recorded (issue_session applied).
	SessionOpened PreSignOutcome = iota + 1
	// SessionFoundOther: the caller's lease had passed to another caller,
	// which recorded a valid session with the same parameters; that one is
	// the answer and the caller's session stays unused.
	SessionFoundOther
	// ContractSignedMeanwhile: WeChat reported the contract signed (or
	// terminated) while the call ran, through a session opened earlier; the
	// lease is released and nothing else changes.
	ContractSignedMeanwhile
)

// FinishPreSign records the session WeChat opened for the lease holder
// token, asked for with parameters of fingerprint fp. The lease is released
// and issue_session applied (its details as given). When an identical
// request's valid session was recorded meanwhile (ours lapsed and another
// caller took over, or we took over from a lapsed holder whose session came
// back first), that session is the answer; if that request has not recorded one yet, ours is
// recorded and its lease left alone; a request with other parameters makes
// ours INVALID_STATE. A contract WeChat reported signed or terminated
// meanwhile only loses the lease.
func (c *Contract) FinishPreSign(ctx context.Context, token, fp string, sess *Session, details map[string]any, now time.Time) (PreSignOutcome, error) {
	released := c.releaseLease(token)
	switch {
	case c.State == StateSigned || c.State == StateTerminated:
		return ContractSignedMeanwhile, nil
	case c.SessionValid(now) && c.ParamsHash == fp:
		// An identical request's session is recorded: another caller's
		// after ours lapsed, or (released) our lapsed predecessor's, which
		// came back while we held the lease. That one answers.
		return SessionFoundOther, nil
	case !released && c.ParamsHash != fp:
		return 0, Errorf(CodeInvalidState, "contract %s was pre-signed with other parameters while WeChat was called", c.Key())
	}
	// Ours, or an identical request's lease that has not recorded its
	// session yet: the first session back is recorded, and the other
	// holder will find it (SessionFoundOther).
	ch := Change{Event: EventIssueSession, Source: SourcePreSign, OccurredAt: now, Session: sess, Details: details}
	if _, err := c.Apply(ctx, ch, now); err != nil {
		return 0, err
	}
	return SessionOpened, nil
}

// FailPreSign records the failed pre-sign call of lease holder token as the
// contract's last error and releases the lease. A token that no longer
// holds the lease changes nothing: the new holder's outcome stands.
func (c *Contract) FailPreSign(token string, e CallError) {
	if c.releaseLease(token) {
		e.Op = CallPreSign
		c.failCall(e)
	}
}

// The calls a CallError can name.
const (
	CallPreSign   = "presign"
	CallTerminate = "terminate"
)

// Err is the failed call as an UPSTREAM_ERROR, the way its first caller
// answered it.
func (e *CallError) Err() *Error {
	return &Error{Code: CodeUpstream, Message: "WeChat Pay answered " + e.Code + ": " + e.Message,
		Detail: map[string]any{"wechat_code": e.Code, "wechat_message": e.Message, "retryable": e.Retryable}}
}
