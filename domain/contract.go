package domain

import (
	"encoding/json"
	"time"
)

// Product names the WeChat Pay product a contract is signed under.
type Product string

// The products contractd serves.
const (
	// ProductPapay is WeChat Pay Global's cross-border auto-debit ("papay").
	ProductPapay Product = "papay"
	// ProductPasswordExempt is the domestic password-exempt contract (免密支付).
	ProductPasswordExempt Product = "password_exempt"
)

// Channel names where the user signs.
type Channel string

// The signing channels. Papay supports all five; password-exempt only
// ChannelMiniProgram.
const (
	ChannelApp         Channel = "app"
	ChannelMiniProgram Channel = "mini_program"
	ChannelH5          Channel = "h5"
	ChannelJSAPI       Channel = "jsapi"
	ChannelWeb         Channel = "web"
)

// Valid reports whether c is one of the signing channels.
func (c Channel) Valid() bool {
	switch c {
	case ChannelApp, ChannelMiniProgram, ChannelH5, ChannelJSAPI, ChannelWeb:
		return true
	}
	return false
}

// Mode is the merchant's relation to WeChat Pay: a merchant signing for
// itself (common) or a service provider signing for sub-merchants
// (institutional).
type Mode string

// The two merchant modes.
const (
	ModeCommon        Mode = "common"
	ModeInstitutional Mode = "institutional"
)

// Key identifies a contract: the merchant's out_contract_code within a
// sub-merchant. SubMchID is the empty string in common mode.
type Key struct {
	SubMchID        string `json:"sub_mchid"`
	OutContractCode string `json:"out_contract_code"`
}

// String renders the key for logs and messages.
func (k Key) String() string {
	if k.SubMchID == "" {
		return k.OutContractCode
	}
	return k.SubMchID + "/" + k.OutContractCode
}

// CallError describes the last failed call to WeChat made for a contract.
type CallError struct {
	Code      string    `json:"code"`
	Message   string    `json:"message"`
	At        time.Time `json:"at"`
	Retryable bool      `json:"retryable"`
	// Op names the call that failed: "presign" or "terminate".
	Op string `json:"op,omitempty"`
}

// Contract is one auto-debit contract as contractd keeps it. Field names
// follow the column names of the contracts table so that the store can scan
// rows straight into it.
type Contract struct {
	ID                     int64           `json:"-"`
	SubMchID               string          `json:"sub_mchid"`
	OutContractCode        string          `json:"out_contract_code"`
	Product                Product         `json:"product"`
	Channel                Channel         `json:"channel"`
	PlanID                 *int64          `json:"plan_id,omitempty"`
	ServiceID              *int64          `json:"service_id,omitempty"`
	State                  State           `json:"state"`
	Version                int64           `json:"version"`
	SessionID              string          `json:"-"`
	SessionExpiresAt       *time.Time      `json:"session_expires_at,omitempty"`
	Launch                 json.RawMessage `json:"-"`
	Params                 json.RawMessage `json:"-"`
	ParamsHash             string          `json:"-"`
	ContractID             string          `json:"contract_id,omitempty"`
	OpenID                 string          `json:"openid,omitempty"`
	UserDisplayName        string          `json:"user_display_name,omitempty"`
	ContractDisplayAccount string          `json:"contract_display_account,omitempty"`
	SignedAt               *time.Time      `json:"signed_at,omitempty"`
	TerminatedAt           *time.Time      `json:"terminated_at,omitempty"`
	TerminationMode        string          `json:"termination_mode,omitempty"`
	ExpiredAt              *time.Time      `json:"expired_at,omitempty"`
	LastOperateTime        *time.Time      `json:"-"`
	LastError              *CallError      `json:"last_error,omitempty"`
	LeaseToken             string          `json:"-"`
	LeaseExpiresAt         *time.Time      `json:"-"`
	OpsTermination         *OpsTermination `json:"-"`
	NextCheckAt            *time.Time      `json:"-"`
	CheckCount             int             `json:"-"`
	HealDueAt              *time.Time      `json:"-"`
	CreatedAt              time.Time       `json:"created_at"`
	UpdatedAt              time.Time       `json:"updated_at"`

	// decided holds the decisions taken since the contract was read, for
	// the store to write their history rows in the same transaction; dirty
	// says whether any stored field changed, scheduled whether only the
	// reconciliation schedule did (see ScheduleCheck). All are unexported,
	// so neither the store's row scanning nor JSON sees them.
	decided   []Record
	dirty     bool
	scheduled bool
}

// Record is one history row the domain decided to write: the verdict on a
// change and the change as it is to be recorded.
type Record struct {
	Key      Key
	Decision Decision
	Change   Change
	// Version is the contract's version once the row is recorded: the
	// version the decision moved it to, or the one it stayed at when the
	// event was ignored.
	Version int64
}

// Decided returns every decision taken since the contract was read, repeats
// included, in the order they were taken.
func (c *Contract) Decided() []Record { return c.decided }

// Pending returns the decisions since the contract was read that call for
// a history row (applied and ignored events), in the order they were taken.
func (c *Contract) Pending() []Record {
	var out []Record
	for _, r := range c.decided {
		if r.Decision.Outcome != OutcomeRepeat {
			out = append(out, r)
		}
	}
	return out
}

// Dirty reports whether any stored field changed since the contract was read.
func (c *Contract) Dirty() bool { return c.dirty }

// IsNew reports whether the contract has not been stored yet.
func (c *Contract) IsNew() bool { return c.Version == 0 }

// Key returns the contract's identifying key.
func (c *Contract) Key() Key {
	return Key{SubMchID: c.SubMchID, OutContractCode: c.OutContractCode}
}

// SessionValid reports whether the contract holds a signing session that has
// not yet passed its expiry at now.
func (c *Contract) SessionValid(now time.Time) bool {
	return c.State == StateSessionIssued && c.SessionExpiresAt != nil && now.Before(*c.SessionExpiresAt)
}
