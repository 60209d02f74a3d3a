package wechatpay

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// EventKind says what happened to a contract.
type EventKind string

// The contract event kinds.
const (
	EventSign      EventKind = "sign"
	EventTerminate EventKind = "terminate"
)

// Family says which WeChat Pay product a contract belongs to.
type Family string

// The contract families.
const (
	FamilyGlobal   Family = "global"
	FamilyDomestic Family = "domestic"
)

// The notification event types the parser accepts.
const (
	EventTypePapaySign        = "PAPAY.SIGN"
	EventTypePapayTerminate   = "PAPAY.TERMINATE"
	EventTypeEntrustSign      = "ENTRUST.SIGN"
	EventTypeEntrustTerminate = "ENTRUST.TERMINATE"
)

// classifyEvent maps an event type to its kind and family.
func classifyEvent(eventType string) (EventKind, Family, bool) {
	switch eventType {
	case EventTypePapaySign:
		return EventSign, FamilyGlobal, true
	case EventTypePapayTerminate:
		return EventTerminate, FamilyGlobal, true
	case EventTypeEntrustSign:
		return EventSign, FamilyDomestic, true
	case EventTypeEntrustTerminate:
		return EventTerminate, FamilyDomestic, true
	}
	return "", "", false
}

// ContractEvent is the decrypted resource of a contract notification.
type ContractEvent struct {
	Kind   EventKind
	Family Family

	MchID, AppID, SpMchID, SpAppID, SubMchID, SubAppID string

	OutContractCode, ContractID string

	PlanID    int64 // global
	ServiceID int64 // domestic

	OpenID, SpOpenID, SubOpenID string

	// OperateTime is when the sign or termination happened. Global:
	// operate_time. Domestic: operate_time if present, else
	// contract_signed_time (sign) or contract_terminated_time (terminate).
	OperateTime time.Time
	// ContractExpiredTime is contract_expired_time or contract_expire_time, as sent.
	ContractExpiredTime string
	// TerminationMode is contract_termination_mode, top-level or (domestic)
	// inside contract_terminate_info.
	TerminationMode string
	// TerminationNote is the termination remark or note, when sent.
	TerminationNote string
	// ContractState is the domestic contract_state.
	ContractState string
}

// contractResource is the union of the global and domestic resource fields.
type contractResource struct {
	MchID           string    `json:"mchid"`
	AppID           string    `json:"appid"`
	SpMchID         string    `json:"sp_mchid"`
	SpAppID         string    `json:"sp_appid"`
	SubMchID        string    `json:"sub_mchid"`
	SubAppID        string    `json:"sub_appid"`
	OutContractCode string    `json:"out_contract_code"`
	ContractID      string    `json:"contract_id"`
	PlanID          flexInt64 `json:"plan_id"`
	ServiceID       flexInt64 `json:"service_id"`
	OpenID          string    `json:"openid"`
	SpOpenID        string    `json:"sp_openid"`
	SubOpenID       string    `json:"sub_openid"`

	OperateTime         string `json:"operate_time"`
	ContractExpiredTime string `json:"contract_expired_time"`
	ContractExpireTime  string `json:"contract_expire_time"`

	ContractTerminationMode   string `json:"contract_termination_mode"`
	ContractTerminationNote   string `json:"contract_termination_note"`
	ContractTerminationRemark string `json:"contract_termination_remark"`
	TerminationNote           string `json:"termination_note"`

	ContractState         string                 `json:"contract_state"`
	ContractSignedTime    string                 `json:"contract_signed_time"`
	ContractTerminateInfo *DomesticTerminateInfo `json:"contract_terminate_info"`
}

// decodeContractEvent decodes a decrypted resource of a known event type.
func decodeContractEvent(kind EventKind, family Family, plaintext []byte) (*ContractEvent, error) {
	var r contractResource
	if err := json.Unmarshal(plaintext, &r); err != nil {
		return nil, fmt.Errorf("%w: resource: %w", ErrMalformed, err)
	}
	if strings.TrimSpace(r.OutContractCode) == "" {
		return nil, fmt.Errorf("%w: resource lacks out_contract_code", ErrMalformed)
	}
	ev := &ContractEvent{
		Kind: kind, Family: family,
		MchID: r.MchID, AppID: r.AppID, SpMchID: r.SpMchID, SpAppID: r.SpAppID,
		SubMchID: r.SubMchID, SubAppID: r.SubAppID,
		OutContractCode: r.OutContractCode, ContractID: r.ContractID,
		OpenID: r.OpenID, SpOpenID: r.SpOpenID, SubOpenID: r.SubOpenID,
		ContractExpiredTime: firstNonEmpty(r.ContractExpiredTime, r.ContractExpireTime),
		TerminationMode:     r.ContractTerminationMode,
		TerminationNote:     firstNonEmpty(r.ContractTerminationNote, r.ContractTerminationRemark, r.TerminationNote),
		ContractState:       r.ContractState,
	}
	operateTime := r.OperateTime
	switch family {
	case FamilyGlobal:
		ev.PlanID = int64(r.PlanID)
	case FamilyDomestic:
		ev.ServiceID = int64(r.ServiceID)
		if info := r.ContractTerminateInfo; info != nil {
			ev.TerminationMode = firstNonEmpty(info.ContractTerminationMode, ev.TerminationMode)
			ev.TerminationNote = firstNonEmpty(info.ContractTerminationRemark, ev.TerminationNote)
		}
		if operateTime == "" {
			operateTime = domesticFallbackTime(kind, &r)
		}
	}
	t, err := parseTime(operateTime)
	if err != nil {
		return nil, fmt.Errorf("%w: operate time: %w", ErrMalformed, err)
	}
	ev.OperateTime = t
	return ev, nil
}

// domesticFallbackTime picks the domestic time that stands in for a missing
// operate_time: the signing time for a sign, the termination time otherwise.
func domesticFallbackTime(kind EventKind, r *contractResource) string {
	if kind == EventSign {
		return r.ContractSignedTime
	}
	if r.ContractTerminateInfo != nil {
		return r.ContractTerminateInfo.ContractTerminatedTime
	}
	return ""
}

// firstNonEmpty returns the first of values that is not empty.
func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
