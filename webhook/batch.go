package webhook

import (
	"encoding/json"
	"fmt"
	"time"
)

// The types of batch.
const (
	// TypeEvents is a batch of feed events.
	TypeEvents = "events"
	// TypePing is a test delivery an operator asked for: no events.
	TypePing = "ping"
)

// Batch is one delivery's body.
type Batch struct {
	// Type is TypeEvents or TypePing. A receiver should accept (2xx) a
	// type it does not know, so that a later contractd's new kinds do not
	// hold its feed up.
	Type string `json:"type"`
	// EndpointID is the endpoint the batch was sent to.
	EndpointID string `json:"endpoint_id"`
	// DeliveryID is the same on every attempt of one batch (and in the
	// Contractd-Delivery header).
	DeliveryID string `json:"delivery_id"`
	// Events are 1 to 100 history entries in feed order (none in a ping).
	Events []Event `json:"events"`
	// NextCursor is the feed cursor after the last event: what
	// GET /v1/events?after= takes to read on from there.
	NextCursor string `json:"next_cursor"`
}

// Event is one history entry of a contract, exactly as GET /v1/events
// answers it.
type Event struct {
	// ID is the row's position in contractd's database. It is not an
	// identity: use EventID.
	ID int64 `json:"id"`
	// EventID names the entry for ever (a UUID, never reused): the key to
	// dedupe on, since a batch may arrive more than once.
	EventID string `json:"event_id"`
	// ContractVersion is the contract's version once the entry was
	// recorded. For one contract, feed order can differ from the order its
	// changes were applied: act only on a version higher than the last one
	// handled for the contract. Zero for entries recorded before contractd
	// had versions on history entries.
	ContractVersion int64 `json:"contract_version"`
	// OutContractCode is the merchant's code of the contract.
	OutContractCode string `json:"out_contract_code"`
	// SubMchID is the sub-merchant, in institutional mode ("" otherwise).
	SubMchID string `json:"sub_mchid"`
	// From and To are the contract's states before and after the entry
	// ("created", "session_issued", "signed", "expired", "terminated";
	// From is "" on a contract's first entry).
	From string `json:"from"`
	To   string `json:"to"`
	// Event is what happened: "issue_session", "sign", "expire",
	// "terminate".
	Event string `json:"event"`
	// Source is who drove it: "presign", "notification" (WeChat's),
	// "sweeper", "reconcile" or "ops".
	Source string `json:"source"`
	// Ignored is true for an entry recorded without changing the state (a
	// sign WeChat reported after the contract was terminated).
	Ignored bool `json:"ignored"`
	// Details are the entry's details, a JSON object.
	Details json.RawMessage `json:"details"`
	// OccurredAt is when it happened (by WeChat's clock, for what WeChat
	// reported); RecordedAt is when contractd recorded it.
	OccurredAt time.Time `json:"occurred_at"`
	RecordedAt time.Time `json:"recorded_at"`
}

// ContractKey names a contract: its code, within its sub-merchant in
// institutional mode.
type ContractKey struct {
	SubMchID        string
	OutContractCode string
}

// String is "<out_contract_code>", or "<sub_mchid>/<out_contract_code>"
// in institutional mode.
func (k ContractKey) String() string {
	if k.SubMchID == "" {
		return k.OutContractCode
	}
	return k.SubMchID + "/" + k.OutContractCode
}

// Contract is the key of the event's contract: what a receiver keeps the
// last handled ContractVersion under.
func (e Event) Contract() ContractKey {
	return ContractKey{SubMchID: e.SubMchID, OutContractCode: e.OutContractCode}
}

// Decode decodes a delivery's body (which Verify should have accepted
// first). Fields it does not know are skipped, so that a later contractd
// may add some; a body that is not a JSON object with a type is
// ErrMalformedBody.
func Decode(body []byte) (Batch, error) {
	var b Batch
	if err := json.Unmarshal(body, &b); err != nil {
		return Batch{}, fmt.Errorf("%w: %w", ErrMalformedBody, err)
	}
	if b.Type == "" {
		return Batch{}, fmt.Errorf("%w: no type", ErrMalformedBody)
	}
	return b, nil
}
