package wechatpay

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
)

// Channel is the client surface a Global papay signing session is made for.
type Channel string

// The Global papay pre-sign channels.
const (
	ChannelApp         Channel = "app"
	ChannelMiniProgram Channel = "mini_program"
	ChannelH5          Channel = "h5"
	ChannelJSAPI       Channel = "jsapi"
	ChannelWeb         Channel = "web"
)

// globalPreSignPaths maps each channel to its pre-sign endpoint.
var globalPreSignPaths = map[Channel]string{
	ChannelApp:         "app-pre-entrust-sign",
	ChannelMiniProgram: "miniprogram-pre-entrust-sign",
	ChannelH5:          "h5-pre-entrust-sign",
	ChannelJSAPI:       "jsapi-pre-entrust-sign",
	ChannelWeb:         "web-pre-entrust-sign",
}

// Valid reports whether ch is one of the five Global papay channels.
func (ch Channel) Valid() bool {
	_, ok := globalPreSignPaths[ch]
	return ok
}

// ReturnsSession reports whether the channel's pre-sign answers with a
// session_id (app, mini_program) rather than a URL (h5, jsapi, web).
func (ch Channel) ReturnsSession() bool {
	return ch == ChannelApp || ch == ChannelMiniProgram
}

// globalContractsPath is the root of every Global papay contract endpoint.
const globalContractsPath = "v3/global/papay/contracts"

// GlobalPreSignRequest is the body of a Global papay pre-sign call.
type GlobalPreSignRequest struct {
	AppID            string `json:"appid,omitempty"`
	SpAppID          string `json:"sp_appid,omitempty"`
	SubMchID         string `json:"sub_mchid,omitempty"`
	SubAppID         string `json:"sub_appid,omitempty"`
	PlanID           int64  `json:"plan_id"`
	OutContractCode  string `json:"out_contract_code"`
	UserDisplayName  string `json:"user_display_name"`
	SuccessNotifyURL string `json:"success_notify_url"`
	OpenID           string `json:"openid,omitempty"`
	UserClientIP     string `json:"user_client_ip,omitempty"`
	ReturnURL        string `json:"return_url,omitempty"`
	ReturnAppID      string `json:"return_appid,omitempty"`
	ExpiredTime      string `json:"expired_time,omitempty"`
}

// GlobalPreSignResponse is WeChat Pay's answer to a Global papay pre-sign:
// a session id (app, mini_program) or a URL (h5, jsapi, web).
type GlobalPreSignResponse struct {
	SessionID   string `json:"session_id,omitempty"`
	SignURL     string `json:"sign_url,omitempty"`
	ShowCodeURL string `json:"show_code_url,omitempty"`
}

// URL returns ShowCodeURL when set, else SignURL: the web channel answers
// with show_code_url, though older documentation says sign_url.
func (r *GlobalPreSignResponse) URL() string {
	if r.ShowCodeURL != "" {
		return r.ShowCodeURL
	}
	return r.SignURL
}

// GlobalPreSign opens a signing session on the given channel.
func (c *Client) GlobalPreSign(ctx context.Context, ch Channel, req GlobalPreSignRequest) (*GlobalPreSignResponse, error) {
	op := "global pre-sign (" + string(ch) + ")"
	path, ok := globalPreSignPaths[ch]
	if !ok {
		return nil, clientError(op, "unknown channel")
	}
	var resp GlobalPreSignResponse
	if err := c.post(ctx, HostGlobal, op, endpoint(c.globalBase, nil, globalContractsPath, path), req, &resp); err != nil {
		return nil, err
	}
	if ch.ReturnsSession() && resp.SessionID == "" {
		return nil, invalidResponse(op, "answer has no session_id", nil)
	}
	if !ch.ReturnsSession() && resp.URL() == "" {
		return nil, invalidResponse(op, "answer has no sign_url or show_code_url", nil)
	}
	return &resp, nil
}

// GlobalQuery carries the identity fields of a Global contract query: AppID
// in common mode; SubMchID, SpAppID and SubAppID in institutional mode.
// PlanID is sent only by QueryGlobalByOutContractCode.
type GlobalQuery struct {
	AppID    string
	SpAppID  string
	SubMchID string
	SubAppID string
	PlanID   int64
}

// values renders the non-empty identity fields, and plan_id when asked.
func (q GlobalQuery) values(withPlan bool) url.Values {
	v := url.Values{}
	for key, val := range map[string]string{
		"appid": q.AppID, "sp_appid": q.SpAppID, "sub_mchid": q.SubMchID, "sub_appid": q.SubAppID,
	} {
		if val != "" {
			v.Set(key, val)
		}
	}
	if withPlan && q.PlanID != 0 {
		v.Set("plan_id", strconv.FormatInt(q.PlanID, 10))
	}
	return v
}

// GlobalContract is a Global papay contract as WeChat Pay's query reports it.
type GlobalContract struct {
	MchID           string `json:"mchid"`
	AppID           string `json:"appid"`
	SpMchID         string `json:"sp_mchid"`
	SubMchID        string `json:"sub_mchid"`
	SpAppID         string `json:"sp_appid"`
	SubAppID        string `json:"sub_appid"`
	ContractID      string `json:"contract_id"`
	PlanID          int64  `json:"plan_id"`
	OutContractCode string `json:"out_contract_code"`
	UserDisplayName string `json:"user_display_name"`
	OpenID          string `json:"openid"`
	State           string `json:"state"`
	SignedTime      string `json:"signed_time"`
	TerminatedTime  string `json:"terminated_time"`
	TerminationMode string `json:"termination_mode"`
	TerminationNote string `json:"termination_note"`
}

// UnmarshalJSON decodes a query answer, accepting plan_id as a number or a string.
func (g *GlobalContract) UnmarshalJSON(data []byte) error {
	type plain GlobalContract
	aux := struct {
		*plain
		PlanID flexInt64 `json:"plan_id"`
	}{plain: (*plain)(g)}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	g.PlanID = int64(aux.PlanID)
	return nil
}

// QueryGlobalByContractID reads a Global contract by WeChat Pay's contract id.
func (c *Client) QueryGlobalByContractID(ctx context.Context, contractID string, q GlobalQuery) (*GlobalContract, error) {
	const op = "query global contract by contract_id"
	if contractID == "" {
		return nil, clientError(op, "empty contract_id")
	}
	var out GlobalContract
	if err := c.get(ctx, HostGlobal, op, endpoint(c.globalBase, q.values(false), globalContractsPath, escape(contractID)), &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// QueryGlobalByOutContractCode reads a Global contract by our contract code;
// q.PlanID is sent as plan_id.
func (c *Client) QueryGlobalByOutContractCode(ctx context.Context, outContractCode string, q GlobalQuery) (*GlobalContract, error) {
	const op = "query global contract by out_contract_code"
	if outContractCode == "" {
		return nil, clientError(op, "empty out_contract_code")
	}
	u := endpoint(c.globalBase, q.values(true), globalContractsPath, "out-contract-code", escape(outContractCode))
	var out GlobalContract
	if err := c.get(ctx, HostGlobal, op, u, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GlobalTerminateRequest is the body of a Global papay terminate call.
type GlobalTerminateRequest struct {
	AppID           string `json:"appid,omitempty"`
	SpAppID         string `json:"sp_appid,omitempty"`
	SubMchID        string `json:"sub_mchid,omitempty"`
	SubAppID        string `json:"sub_appid,omitempty"`
	TerminationNote string `json:"termination_note"`
}

// TerminateGlobal ends a signed Global contract. WeChat Pay answers 204 and
// later sends a PAPAY.TERMINATE notification.
func (c *Client) TerminateGlobal(ctx context.Context, contractID string, req GlobalTerminateRequest) error {
	const op = "terminate global contract"
	if contractID == "" {
		return clientError(op, "empty contract_id")
	}
	return c.post(ctx, HostGlobal, op, endpoint(c.globalBase, nil, globalContractsPath, escape(contractID), "terminate"), req, nil)
}
