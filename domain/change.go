package domain

import (
	"context"
	"encoding/json"
	"time"
)

// Session is a signing session WeChat opened for a contract, and what the
// caller needs to launch it.
type Session struct {
	ID        string
	ExpiresAt time.Time
	Launch    json.RawMessage
}

// Change is one event to apply to a contract together with the facts that
// came with it.
type Change struct {
	Event  Event
	Source Source
	// OccurredAt is when the event happened: WeChat's operate_time for
	// notifications and queries, the moment of the call otherwise.
	OccurredAt time.Time
	// Details are recorded verbatim in the history row.
	Details map[string]any
	// Session is required for issue_session.
	Session *Session
	// ContractID, OpenID and TerminationMode are WeChat's facts about a sign
	// or a termination; empty values leave the stored ones alone.
	ContractID      string
	OpenID          string
	TerminationMode string
}

// attribute returns ch as it should be recorded: a terminate that arrives
// while an operator's termination is under way at WeChat is the operator's,
// whoever reports it first (WeChat's notification often overtakes the
// answer to the terminate call), so unless WeChat says another party ended
// it (termination mode USER or PLATFORM), it is recorded with source ops and
// the operator's note; the notification's own facts stay in the details.
func (c *Contract) attribute(ch Change) Change {
	ot := c.OpsTermination
	if ch.Event != EventTerminate || ot == nil || !ot.claims(ch) {
		return ch
	}
	details := map[string]any{}
	for k, v := range ch.Details {
		details[k] = v
	}
	details["note"] = ot.Note
	if ot.Actor != "" {
		details["actor"] = ot.Actor
	}
	if ch.Source != SourceOps {
		details["reported_by"] = string(ch.Source)
	}
	ch.Details = details
	ch.Source = SourceOps
	return ch
}

// Apply decides ch against the contract's current state and, when the event
// applies, moves the contract and records the facts that came with it. A
// terminate is first attributed (see OpsTermination). Every decision is
// added to Decided; the history row it calls for to Pending: one row for
// OutcomeApply, one row marked ignored for OutcomeIgnore, nothing for
// OutcomeRepeat. A contract
// that is not stored yet (IsNew) records its first row with an empty
// from-state: nothing stood before it. A change without OccurredAt happened
// at now.
func (c *Contract) Apply(ctx context.Context, ch Change, now time.Time) (Decision, error) {
	if ch.OccurredAt.IsZero() {
		ch.OccurredAt = now
	}
	// WeChat's own reports move LastOperateTime, also when attribution
	// records them as the operator's.
	reportedByWeChat := ch.Source == SourceNotification || ch.Source == SourceReconcile
	ch = c.attribute(ch)
	d, err := Decide(ctx, c.State, ch.Event)
	if err != nil {
		return d, err
	}
	if d.Outcome != OutcomeApply {
		c.record(d, ch)
		return d, nil
	}
	at := ch.OccurredAt
	switch ch.Event {
	case EventIssueSession:
		if ch.Session == nil || ch.Session.ID == "" {
			return Decision{}, Errorf(CodeInvalidState, "issue_session needs a session")
		}
		c.SessionID = ch.Session.ID
		exp := ch.Session.ExpiresAt
		c.SessionExpiresAt = &exp
		c.Launch = ch.Session.Launch
		c.LastError = nil
	case EventSign:
		c.SignedAt = &at
	case EventExpire:
		c.ExpiredAt = &at
	case EventTerminate:
		c.TerminatedAt = &at
		c.OpsTermination = nil
		if ch.TerminationMode != "" {
			c.TerminationMode = ch.TerminationMode
		}
	}
	if ch.ContractID != "" {
		c.ContractID = ch.ContractID
	}
	if ch.OpenID != "" {
		c.OpenID = ch.OpenID
	}
	if reportedByWeChat {
		if c.LastOperateTime == nil || at.After(*c.LastOperateTime) {
			c.LastOperateTime = &at
		}
	}
	if c.IsNew() {
		d.From = ""
	}
	c.State = d.To
	c.Version++
	c.dirty = true
	c.record(d, ch)
	return d, nil
}

func (c *Contract) record(d Decision, ch Change) {
	if ch.Details == nil {
		ch.Details = map[string]any{}
	}
	c.decided = append(c.decided, Record{Key: c.Key(), Decision: d, Change: ch, Version: c.Version})
}

// HistoryEntry is one row of a contract's append-only history.
type HistoryEntry struct {
	ID int64 `json:"id"`
	// EventID names the row for ever (a UUID): unlike ID, it is never
	// handed out again, not even after a failover lost the row.
	EventID string `json:"event_id"`
	// ContractVersion is the contract's version once the row was
	// recorded (assigned under the contract's row lock): feed order can
	// differ from the order one contract's changes were applied, so a
	// reader acts only on a version higher than the last it handled. Zero
	// for a row written by a replica older than migration 00007.
	ContractVersion int64           `json:"contract_version"`
	SubMchID        string          `json:"sub_mchid"`
	OutContractCode string          `json:"out_contract_code"`
	FromState       State           `json:"from"`
	ToState         State           `json:"to"`
	Event           Event           `json:"event"`
	Source          Source          `json:"source"`
	Ignored         bool            `json:"ignored"`
	Details         json.RawMessage `json:"details"`
	OccurredAt      time.Time       `json:"occurred_at"`
	RecordedAt      time.Time       `json:"recorded_at"`
}

// FeedPage is one answer of the feed (GET /v1/events): rows in feed order
// and the cursor that follows them.
type FeedPage struct {
	// Items are the rows after the cursor asked for, in feed order.
	Items []HistoryEntry
	// Next is the cursor to ask with next.
	Next string
	// Lost, when not nil, says that the row the cursor asked for was
	// written by a database history a failover discarded: Items is empty,
	// and Next resumes at the last row still held before the lost
	// position, so that nothing the database holds is skipped.
	Lost *FeedPosition
}

// FeedPosition is a position in the feed: the writer's timeline and
// transaction id and the row's id, and the row's event id (empty for a
// cursor issued before rows carried one).
type FeedPosition struct {
	Timeline int64  `json:"timeline"`
	XID      int64  `json:"xid"`
	ID       int64  `json:"id"`
	EventID  string `json:"event_id,omitempty"`
}
