package wechatpaysim

import (
	"net/http"
	"strconv"
	"time"
)

const (
	// signMiniProgramAppID is the simulated WeChat signing mini program.
	signMiniProgramAppID = "wx5e73c65404eee268"
	// domesticSessionLife is how long a domestic pre-sign session lives.
	domesticSessionLife = 2 * time.Hour
)

// domesticPreSignBody is the body of a domestic pre-sign request.
type domesticPreSignBody struct {
	AppID                  string `json:"appid"`
	SPAppID                string `json:"sp_appid"`
	SubMchID               string `json:"sub_mchid"`
	SubAppID               string `json:"sub_appid"`
	ServiceID              *int64 `json:"service_id"`
	OutContractCode        string `json:"out_contract_code"`
	NotifyURL              string `json:"notify_url"`
	ContractDisplayAccount string `json:"contract_display_account"`
	OpenID                 string `json:"openid"`
	SPOpenID               string `json:"sp_openid"`
	SubOpenID              string `json:"sub_openid"`
}

func (s *Simulator) domesticPreSign(r *http.Request, body []byte) (int, any, error) {
	mode := r.PathValue("mode")
	switch mode {
	case "normal", "service-provider", "ecommerce":
	default:
		return 0, nil, notFound()
	}
	var b domesticPreSignBody
	if err := decodeBody(body, &b); err != nil {
		return 0, nil, err
	}
	var modeErr error
	openID := b.OpenID
	if mode == "service-provider" {
		if b.SPOpenID != "" {
			openID = b.SPOpenID
		}
		modeErr = firstError(
			checkString("body", "sp_appid", b.SPAppID, true, 32),
			checkString("body", "sub_mchid", b.SubMchID, true, 32),
			checkString("body", "appid", b.AppID, false, 32),
			checkString("body", "sub_appid", b.SubAppID, false, 32),
			checkString("body", "sp_openid", b.SPOpenID, false, 128),
			checkString("body", "sub_openid", b.SubOpenID, false, 128),
		)
		if modeErr == nil && b.SubOpenID != "" && b.SubAppID == "" {
			modeErr = paramError("body", "sub_appid", "is required with sub_openid")
		}
	} else {
		modeErr = checkString("body", "appid", b.AppID, true, 32)
		if modeErr == nil && b.SubMchID != "" {
			modeErr = paramError("body", "sub_mchid", "is only allowed in service-provider mode")
		}
	}
	if err := firstError(
		modeErr,
		checkString("body", "openid", b.OpenID, false, 128),
		checkString("body", "out_contract_code", b.OutContractCode, true, 32),
		checkNotifyURL("notify_url", b.NotifyURL),
		checkString("body", "contract_display_account", b.ContractDisplayAccount, true, 32),
		checkNo4Byte("body", "contract_display_account", b.ContractDisplayAccount),
	); err != nil {
		return 0, nil, err
	}
	if b.ServiceID == nil {
		return 0, nil, paramError("body", "service_id", "is required")
	}
	if *b.ServiceID <= 0 {
		return 0, nil, paramError("body", "service_id", "must be a positive number")
	}
	now := s.now()
	sess := &Session{
		Terms: Terms{
			Family:          FamilyDomestic,
			Channel:         "mini_program",
			Mode:            mode,
			MchID:           s.cfg.MchID,
			AppID:           b.AppID,
			SPAppID:         b.SPAppID,
			SubMchID:        b.SubMchID,
			SubAppID:        b.SubAppID,
			ServiceID:       *b.ServiceID,
			OutContractCode: b.OutContractCode,
			DisplayName:     b.ContractDisplayAccount,
		},
		NotifyURL: b.NotifyURL,
		OpenID:    openID,
		SubOpenID: b.SubOpenID,
		CreatedAt: now,
		ExpiresAt: now.Add(domesticSessionLife),
	}
	if err := s.addSession(sess); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{
		"pre_entrustweb_id": sess.ID,
		"mchid":             s.cfg.MchID,
		"service_id":        sess.ServiceID,
		"out_contract_code": sess.OutContractCode,
		"sign_mp_appid":     signMiniProgramAppID,
		"sign_mp_path":      "pages/index/index?pre_entrustweb_id=" + sess.ID,
	}, nil
}

// domesticTerminateInfo is contract_terminate_info.
type domesticTerminateInfo struct {
	ContractTerminationMode   string `json:"contract_termination_mode"`
	ContractTerminatedTime    string `json:"contract_terminated_time"`
	ContractTerminationRemark string `json:"contract_termination_remark,omitempty"`
}

// domesticContract is a domestic query answer and, with OperateTime, a decrypted
// notification resource.
type domesticContract struct {
	MchID                 string                 `json:"mchid"`
	AppID                 string                 `json:"appid,omitempty"`
	SubMchID              string                 `json:"sub_mchid,omitempty"`
	SubAppID              string                 `json:"sub_appid,omitempty"`
	ServiceID             int64                  `json:"service_id"`
	OutContractCode       string                 `json:"out_contract_code"`
	ContractID            string                 `json:"contract_id"`
	OpenID                string                 `json:"openid"`
	SubOpenID             string                 `json:"sub_openid,omitempty"`
	ContractState         string                 `json:"contract_state"`
	OperateTime           string                 `json:"operate_time,omitempty"`
	ContractSignedTime    string                 `json:"contract_signed_time"`
	ContractTerminateInfo *domesticTerminateInfo `json:"contract_terminate_info,omitempty"`
}

func domesticAnswer(c *Contract) domesticContract {
	a := domesticContract{
		MchID: c.MchID, AppID: c.AppID, SubMchID: c.SubMchID, SubAppID: c.SubAppID,
		ServiceID: c.ServiceID, OutContractCode: c.OutContractCode, ContractID: c.ContractID,
		OpenID: c.OpenID, SubOpenID: c.SubOpenID, ContractState: c.State,
		ContractSignedTime: wechatTime(c.SignedTime),
	}
	if a.AppID == "" {
		a.AppID = c.SPAppID
	}
	if c.State == StateTerminated {
		a.ContractTerminateInfo = &domesticTerminateInfo{
			ContractTerminationMode:   c.TerminationMode,
			ContractTerminatedTime:    wechatTime(c.TerminatedTime),
			ContractTerminationRemark: c.TerminationNote,
		}
	}
	return a
}

// domesticLookup finds the domestic contract named by the path and sub_mchid.
func (s *Simulator) domesticLookup(r *http.Request, subMchID string) (*Contract, error) {
	serviceID, err := strconv.ParseInt(r.PathValue("service_id"), 10, 64)
	if err != nil || serviceID <= 0 {
		return nil, paramError("path", "service_id", "must be a positive number")
	}
	code := r.PathValue("code")
	if err := checkString("path", "out_contract_code", code, true, 32); err != nil {
		return nil, err
	}
	c := s.contracts[s.byKey[contractKey{FamilyDomestic, subMchID, code}]]
	if c == nil || c.ServiceID != serviceID {
		return nil, contractNotExist()
	}
	return c, nil
}

func (s *Simulator) domesticQuery(r *http.Request, _ []byte) (int, any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.domesticLookup(r, r.URL.Query().Get("sub_mchid"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, domesticAnswer(c), nil
}

// domesticTerminateBody is the body of a domestic terminate request.
type domesticTerminateBody struct {
	SubMchID                  string `json:"sub_mchid"`
	ContractTerminationRemark string `json:"contract_termination_remark"`
}

func (s *Simulator) domesticTerminate(r *http.Request, body []byte) (int, any, error) {
	var b domesticTerminateBody
	if err := decodeBody(body, &b); err != nil {
		return 0, nil, err
	}
	if err := checkString("body", "contract_termination_remark", b.ContractTerminationRemark, true, 256); err != nil {
		return 0, nil, err
	}
	subMchID := b.SubMchID
	if subMchID == "" {
		subMchID = r.URL.Query().Get("sub_mchid")
	}
	s.mu.Lock()
	c, err := s.domesticLookup(r, subMchID)
	if err == nil && c.State != StateSigned {
		err = contractNotExist()
	}
	if err != nil {
		s.mu.Unlock()
		return 0, nil, err
	}
	done := s.terminateLocked(c, TerminationMerchant, b.ContractTerminationRemark)
	s.mu.Unlock()
	s.notifyTerminated(done)
	return http.StatusNoContent, nil, nil
}
