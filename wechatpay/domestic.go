package wechatpay

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
)

// DomesticMode selects the merchant arrangement of a domestic
// password-exempt pre-sign.
type DomesticMode string

// The domestic password-exempt pre-sign modes.
const (
	DomesticNormal          DomesticMode = "normal"
	DomesticServiceProvider DomesticMode = "service-provider"
	DomesticEcommerce       DomesticMode = "ecommerce"
)

// Valid reports whether m is one of the three domestic modes.
func (m DomesticMode) Valid() bool {
	switch m {
	case DomesticNormal, DomesticServiceProvider, DomesticEcommerce:
		return true
	}
	return false
}

// domesticContractsPath is the root of every domestic contract endpoint.
const domesticContractsPath = "v3/password-exempt-contract/contracts"

// DomesticPreSignRequest is the body of a domestic mini-program pre-sign.
// The sp_* and sub_* fields are for the service-provider mode.
type DomesticPreSignRequest struct {
	AppID                  string `json:"appid,omitempty"`
	ServiceID              int64  `json:"service_id"`
	OutContractCode        string `json:"out_contract_code"`
	NotifyURL              string `json:"notify_url"`
	ContractDisplayAccount string `json:"contract_display_account"`
	OpenID                 string `json:"openid,omitempty"`
	SpAppID                string `json:"sp_appid,omitempty"`
	SpOpenID               string `json:"sp_openid,omitempty"`
	SubMchID               string `json:"sub_mchid,omitempty"`
	SubAppID               string `json:"sub_appid,omitempty"`
	SubOpenID              string `json:"sub_openid,omitempty"`
}

// DomesticPreSignResponse is WeChat Pay's answer to a domestic pre-sign: the
// app opens mini program SignMpAppID at SignMpPath.
type DomesticPreSignResponse struct {
	PreEntrustwebID string `json:"pre_entrustweb_id"`
	MchID           string `json:"mchid"`
	ServiceID       int64  `json:"service_id"`
	OutContractCode string `json:"out_contract_code"`
	SignMpAppID     string `json:"sign_mp_appid"`
	SignMpPath      string `json:"sign_mp_path"`
}

// UnmarshalJSON decodes a pre-sign answer, accepting service_id as a number or a string.
func (r *DomesticPreSignResponse) UnmarshalJSON(data []byte) error {
	type plain DomesticPreSignResponse
	aux := struct {
		*plain
		ServiceID flexInt64 `json:"service_id"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	r.ServiceID = int64(aux.ServiceID)
	return nil
}

// DomesticPreSign opens a domestic mini-program signing session.
func (c *Client) DomesticPreSign(ctx context.Context, mode DomesticMode, req DomesticPreSignRequest) (*DomesticPreSignResponse, error) {
	op := "domestic pre-sign (" + string(mode) + ")"
	if !mode.Valid() {
		return nil, clientError(op, "unknown mode")
	}
	u := endpoint(c.domesticBase, nil, domesticContractsPath, string(mode), "pre-entrust-sign", "mini-program")
	var resp DomesticPreSignResponse
	if err := c.post(ctx, HostDomestic, op, u, req, &resp); err != nil {
		return nil, err
	}
	if resp.SignMpAppID == "" || resp.SignMpPath == "" {
		return nil, invalidResponse(op, "answer has no sign_mp_appid or sign_mp_path", nil)
	}
	return &resp, nil
}

// DomesticTerminateInfo tells how and when a domestic contract ended.
type DomesticTerminateInfo struct {
	ContractTerminationMode   string `json:"contract_termination_mode"`
	ContractTerminatedTime    string `json:"contract_terminated_time"`
	ContractTerminationRemark string `json:"contract_termination_remark"`
}

// DomesticContract is a domestic contract as WeChat Pay's query reports it.
type DomesticContract struct {
	MchID                 string                 `json:"mchid"`
	AppID                 string                 `json:"appid"`
	SubMchID              string                 `json:"sub_mchid"`
	ServiceID             int64                  `json:"service_id"`
	OutContractCode       string                 `json:"out_contract_code"`
	ContractID            string                 `json:"contract_id"`
	OpenID                string                 `json:"openid"`
	ContractState         string                 `json:"contract_state"`
	ContractSignedTime    string                 `json:"contract_signed_time"`
	ContractTerminateInfo *DomesticTerminateInfo `json:"contract_terminate_info,omitempty"`
}

// UnmarshalJSON decodes a query answer, accepting service_id as a number or a string.
func (d *DomesticContract) UnmarshalJSON(data []byte) error {
	type plain DomesticContract
	aux := struct {
		*plain
		ServiceID flexInt64 `json:"service_id"`
	}{plain: (*plain)(d)}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	d.ServiceID = int64(aux.ServiceID)
	return nil
}

// domesticContractPath returns the path segments naming one domestic contract.
func domesticContractPath(serviceID int64, outContractCode string) []string {
	return []string{
		domesticContractsPath, "service-id", strconv.FormatInt(serviceID, 10),
		"out-contract-code", escape(outContractCode),
	}
}

// QueryDomestic reads a domestic contract by service id and our contract
// code; subMchID is sent as sub_mchid when not empty.
func (c *Client) QueryDomestic(ctx context.Context, serviceID int64, outContractCode, subMchID string) (*DomesticContract, error) {
	const op = "query domestic contract"
	if outContractCode == "" {
		return nil, clientError(op, "empty out_contract_code")
	}
	q := url.Values{}
	if subMchID != "" {
		q.Set("sub_mchid", subMchID)
	}
	var out DomesticContract
	if err := c.get(ctx, HostDomestic, op, endpoint(c.domesticBase, q, domesticContractPath(serviceID, outContractCode)...), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DomesticTerminateRequest is the body of a domestic terminate call.
type DomesticTerminateRequest struct {
	ContractTerminationRemark string `json:"contract_termination_remark"`
	SubMchID                  string `json:"sub_mchid,omitempty"`
}

// TerminateDomestic ends a domestic contract. WeChat Pay answers 204 (200 is
// accepted too).
func (c *Client) TerminateDomestic(ctx context.Context, serviceID int64, outContractCode string, req DomesticTerminateRequest) error {
	const op = "terminate domestic contract"
	if outContractCode == "" {
		return clientError(op, "empty out_contract_code")
	}
	segments := append(domesticContractPath(serviceID, outContractCode), "terminate")
	return c.post(ctx, HostDomestic, op, endpoint(c.domesticBase, nil, segments...), req, nil)
}
