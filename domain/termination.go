package domain

import (
	"context"
	"time"
)

// OpsTermination is the operator's mark on a contract whose termination is
// under way at WeChat: the note the operator gave and when it was asked.
//
// WeChat's termination notification often overtakes its answer to the
// terminate call, so the mark is set before the call: a terminate that
// arrives while it stands, by WeChat's word done by the merchant, is the
// operator's (see Apply). The mark is taken away with the lease on every
// failure (FailTermination); only a holder that dies mid-call leaves it,
// and then it claims terminates for OpsTerminationTTL at most, because the
// call may well have reached WeChat before the holder died.
type OpsTermination struct {
	Note        string    `json:"note"`
	RequestedAt time.Time `json:"requested_at"`
	// Actor names the operator who asked, when their token names them.
	Actor string `json:"actor,omitempty"`
}

// OpsTerminationTTL is how long an operator's termination claims the
// terminate event that follows it; an older mark claims nothing.
const OpsTerminationTTL = 10 * time.Minute

// claims reports whether a terminate change is the operator's: WeChat does
// not say a user or the platform ended the contract, and it happened within
// OpsTerminationTTL of the operator's request.
func (ot *OpsTermination) claims(ch Change) bool {
	byMerchant := ch.TerminationMode == "" || ch.TerminationMode == "MERCHANT"
	return byMerchant && ch.OccurredAt.Sub(ot.RequestedAt) <= OpsTerminationTTL
}

// MissingForQuery names the identifier WeChat's query calls need that the
// contract lacks ("" when none is missing): a password-exempt contract is
// queried by service_id, a papay contract by contract_id or plan_id.
func (c *Contract) MissingForQuery() string {
	switch {
	case c.Product == ProductPasswordExempt && c.ServiceID == nil:
		return "service_id"
	case c.Product != ProductPasswordExempt && c.ContractID == "" && c.PlanID == nil:
		return "contract_id"
	}
	return ""
}

// MissingForTerminate names the identifier WeChat's terminate call needs
// that the contract lacks ("" when none is missing): a password-exempt
// contract is terminated by service_id, a papay contract by contract_id.
func (c *Contract) MissingForTerminate() string {
	switch {
	case c.Product == ProductPasswordExempt && c.ServiceID == nil:
		return "service_id"
	case c.Product != ProductPasswordExempt && c.ContractID == "":
		return "contract_id"
	}
	return ""
}

// MissingError is the INVALID_STATE refusal of a call to WeChat that needs
// the named identifier, which the contract lacks.
func (c *Contract) MissingError(what, field string) *Error {
	return &Error{Code: CodeInvalidState,
		Message: "contract " + c.Key().String() + " has no " + field + ", which WeChat Pay's " + what + " call needs",
		Fields:  []FieldError{{Field: field, Reason: "is not known for this contract"}}}
}

// TerminationStep is what an operator's terminate is to do next.
type TerminationStep int

// The steps of an operator's terminate.
const (
	// TerminationDone: the contract is terminated already; answer it.
	TerminationDone TerminationStep = iota + 1
	// TerminationWait: another terminate holds the lease and is calling
	// WeChat; wait for its outcome.
	TerminationWait
	// TerminationCall: the caller took the lease and set the operator's
	// mark; call WeChat.
	TerminationCall
)

// TerminationPlan is BeginTermination's decision.
type TerminationPlan struct {
	Step TerminationStep
	// Wait is set for TerminationWait.
	Wait Wait
	// Token holds the lease for TerminationCall; TookOver says it replaced
	// a holder whose lease had lapsed.
	Token    string
	TookOver bool
}

// BeginTermination decides what an operator's terminate with note does to
// the contract at now. since is when the caller started: a failure of
// another operator's terminate recorded after it is shared rather than
// repeated at once. A terminated contract is done, whoever ended it; only
// signed contracts are terminated through WeChat, and only when the contract
// carries the identifier WeChat's terminate call needs. A lease held by
// another caller means wait; otherwise the caller takes the lease for ttl and
// sets the operator's mark, naming actor (the token's holder, "" when the
// token names none), so that a termination WeChat reports while the mark
// stands is recorded as actor's.
func (c *Contract) BeginTermination(actor, note string, now time.Time, ttl time.Duration, since time.Time) (TerminationPlan, error) {
	switch {
	case c.State == StateTerminated:
		return TerminationPlan{Step: TerminationDone}, nil
	case c.State != StateSigned:
		return TerminationPlan{}, Errorf(CodeInvalidState, "only signed contracts can be terminated; %s is %s", c.Key(), c.State)
	}
	if field := c.MissingForTerminate(); field != "" {
		return TerminationPlan{}, c.MissingError("terminate", field)
	}
	if c.LeaseHeld(now) {
		return TerminationPlan{Step: TerminationWait, Wait: Wait{LeaseLeft: c.LeaseLeft(now)}}, nil
	}
	if e := c.LastError; e != nil && e.Op == CallTerminate && !e.At.Before(since) {
		return TerminationPlan{}, e.Err()
	}
	token, tookOver := c.takeLease(now, ttl)
	c.OpsTermination = &OpsTermination{Note: note, RequestedAt: now, Actor: actor}
	return TerminationPlan{Step: TerminationCall, Token: token, TookOver: tookOver}, nil
}

// FinishTermination records that WeChat ended the contract for lease holder
// token: ch is the terminate (the operator's own, or what a query to WeChat
// reported). The lease and the operator's mark are released and the
// terminate applied; when WeChat's notification already terminated the
// contract, the terminate is a repeat and only the lease and mark go. A
// token that lost the lease still applies the terminate, which WeChat
// confirmed, but leaves the new holder's lease and mark alone.
func (c *Contract) FinishTermination(ctx context.Context, token string, ch Change, now time.Time) (Decision, error) {
	released := c.releaseLease(token)
	d, err := c.Apply(ctx, ch, now)
	if err != nil {
		return d, err
	}
	if released && c.OpsTermination != nil {
		c.OpsTermination = nil
		c.dirty = true
	}
	return d, nil
}

// FailTermination records the failed terminate call of lease holder token
// as the contract's last error and releases the lease and the operator's
// mark. A token that no longer holds the lease changes nothing.
func (c *Contract) FailTermination(token string, e CallError) {
	if c.releaseLease(token) {
		c.OpsTermination = nil
		e.Op = CallTerminate
		c.failCall(e)
	}
}
