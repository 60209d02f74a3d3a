package wechatpaysim

import (
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// globalChannel maps the pre-sign path segment to the channel name.
func globalChannel(segment string) (string, bool) {
	switch segment {
	case "app-pre-entrust-sign":
		return "app", true
	case "miniprogram-pre-entrust-sign":
		return "mini_program", true
	case "h5-pre-entrust-sign":
		return "h5", true
	case "jsapi-pre-entrust-sign":
		return "jsapi", true
	case "web-pre-entrust-sign":
		return "web", true
	}
	return "", false
}

// globalPreSignBody is the body of a global pre-sign request.
type globalPreSignBody struct {
	AppID            string `json:"appid"`
	SPAppID          string `json:"sp_appid"`
	SubMchID         string `json:"sub_mchid"`
	SubAppID         string `json:"sub_appid"`
	PlanID           *int64 `json:"plan_id"`
	OutContractCode  string `json:"out_contract_code"`
	UserDisplayName  string `json:"user_display_name"`
	SuccessNotifyURL string `json:"success_notify_url"`
	OpenID           string `json:"openid"`
	UserClientIP     string `json:"user_client_ip"`
	ReturnURL        string `json:"return_url"`
	ReturnAppID      string `json:"return_appid"`
	ExpiredTime      string `json:"expired_time"`
}

// globalMode checks the appid fields by mode: common takes appid; institutional takes
// sp_appid and sub_mchid, and may take sub_appid.
func globalMode(location, appID, spAppID, subMchID, subAppID string) (string, error) {
	if spAppID == "" && subMchID == "" {
		if subAppID != "" {
			return "", paramError(location, "sub_appid", "is only allowed in institutional mode (with sp_appid and sub_mchid)")
		}
		return "common", checkString(location, "appid", appID, true, 32)
	}
	if appID != "" {
		return "", paramError(location, "appid", "is not allowed in institutional mode; use sp_appid")
	}
	return "institutional", firstError(
		checkString(location, "sp_appid", spAppID, true, 32),
		checkString(location, "sub_mchid", subMchID, true, 32),
		checkString(location, "sub_appid", subAppID, false, 32),
	)
}

func (s *Simulator) globalPreSign(r *http.Request, body []byte) (int, any, error) {
	channel, ok := globalChannel(r.PathValue("kind"))
	if !ok {
		return 0, nil, notFound()
	}
	var b globalPreSignBody
	if err := decodeBody(body, &b); err != nil {
		return 0, nil, err
	}
	mode, err := globalMode("body", b.AppID, b.SPAppID, b.SubMchID, b.SubAppID)
	if err != nil {
		return 0, nil, err
	}
	if b.PlanID == nil {
		return 0, nil, paramError("body", "plan_id", "is required")
	}
	if *b.PlanID <= 0 {
		return 0, nil, paramError("body", "plan_id", "must be a positive integer")
	}
	if err := firstError(
		checkString("body", "out_contract_code", b.OutContractCode, true, 32),
		checkString("body", "user_display_name", b.UserDisplayName, true, 32),
		checkNo4Byte("body", "user_display_name", b.UserDisplayName),
		checkNotifyURL("success_notify_url", b.SuccessNotifyURL),
		checkString("body", "openid", b.OpenID, false, 128),
		checkString("body", "user_client_ip", b.UserClientIP, false, 32),
		checkString("body", "return_url", b.ReturnURL, false, 256),
		checkString("body", "return_appid", b.ReturnAppID, false, 32),
	); err != nil {
		return 0, nil, err
	}
	now := s.now()
	expires, err := sessionExpiry(channel, b.ExpiredTime, now)
	if err != nil {
		return 0, nil, err
	}
	sess := &Session{
		Terms: Terms{
			Family:          FamilyGlobal,
			Channel:         channel,
			Mode:            mode,
			MchID:           s.cfg.MchID,
			AppID:           b.AppID,
			SPAppID:         b.SPAppID,
			SubMchID:        b.SubMchID,
			SubAppID:        b.SubAppID,
			PlanID:          *b.PlanID,
			OutContractCode: b.OutContractCode,
			DisplayName:     b.UserDisplayName,
		},
		NotifyURL:    b.SuccessNotifyURL,
		OpenID:       b.OpenID,
		UserClientIP: b.UserClientIP,
		ReturnURL:    b.ReturnURL,
		ReturnAppID:  b.ReturnAppID,
		CreatedAt:    now,
		ExpiresAt:    expires,
	}
	if err := s.addSession(sess); err != nil {
		return 0, nil, err
	}
	pageURL := s.signPageURL(r, sess.ID)
	switch channel {
	case "h5", "jsapi":
		return http.StatusOK, map[string]string{"sign_url": pageURL}, nil
	case "web":
		return http.StatusOK, map[string]string{"show_code_url": pageURL}, nil
	default:
		return http.StatusOK, map[string]string{"session_id": sess.ID}, nil
	}
}

// sessionExpiry applies the expired_time rules: h5 and web sessions must expire more than 5
// and less than 10 minutes after the request (10 minutes when absent); other channels more
// than 5 minutes and less than 2 hours (2 hours when absent).
func sessionExpiry(channel, expiredTime string, now time.Time) (time.Time, error) {
	limit, text := 2*time.Hour, "2 hours"
	if channel == "h5" || channel == "web" {
		limit, text = 10*time.Minute, "10 minutes"
	}
	if expiredTime == "" {
		return now.Add(limit), nil
	}
	t, err := time.Parse(time.RFC3339, expiredTime)
	if err != nil {
		return time.Time{}, paramError("body", "expired_time", "is not an RFC3339 time")
	}
	if d := t.Sub(now); d <= 5*time.Minute || d >= limit {
		return time.Time{}, paramError("body", "expired_time",
			"must be more than 5 minutes and less than "+text+" after the request for channel "+channel)
	}
	return t, nil
}

// globalQueryKey is the appid part of a global query or terminate call.
type globalQueryKey struct {
	mode, appID, spAppID, subMchID, subAppID string
}

func (k globalQueryKey) matches(c *Contract) bool {
	if c.Family != FamilyGlobal || c.Mode != k.mode {
		return false
	}
	if k.mode == "common" {
		return c.AppID == k.appID
	}
	return c.SPAppID == k.spAppID && c.SubMchID == k.subMchID && (k.subAppID == "" || k.subAppID == c.SubAppID)
}

func globalQueryKeyFrom(location string, q url.Values) (globalQueryKey, error) {
	k := globalQueryKey{appID: q.Get("appid"), spAppID: q.Get("sp_appid"), subMchID: q.Get("sub_mchid"), subAppID: q.Get("sub_appid")}
	mode, err := globalMode(location, k.appID, k.spAppID, k.subMchID, k.subAppID)
	k.mode = mode
	return k, err
}

// globalContractAnswer is a global query answer.
type globalContractAnswer struct {
	MchID           string `json:"mchid,omitempty"`
	SPMchID         string `json:"sp_mchid,omitempty"`
	AppID           string `json:"appid,omitempty"`
	SPAppID         string `json:"sp_appid,omitempty"`
	SubMchID        string `json:"sub_mchid,omitempty"`
	SubAppID        string `json:"sub_appid,omitempty"`
	ContractID      string `json:"contract_id"`
	PlanID          int64  `json:"plan_id"`
	OutContractCode string `json:"out_contract_code"`
	UserDisplayName string `json:"user_display_name"`
	OpenID          string `json:"openid"`
	SubOpenID       string `json:"sub_openid,omitempty"`
	State           string `json:"state"`
	SignedTime      string `json:"signed_time"`
	TerminatedTime  string `json:"terminated_time,omitempty"`
	TerminationMode string `json:"termination_mode,omitempty"`
	TerminationNote string `json:"termination_note,omitempty"`
}

func globalAnswer(c *Contract) globalContractAnswer {
	a := globalContractAnswer{
		AppID: c.AppID, SPAppID: c.SPAppID, SubMchID: c.SubMchID, SubAppID: c.SubAppID,
		ContractID: c.ContractID, PlanID: c.PlanID, OutContractCode: c.OutContractCode,
		UserDisplayName: c.DisplayName, OpenID: c.OpenID, SubOpenID: c.SubOpenID, State: c.State,
		SignedTime: wechatTime(c.SignedTime), TerminatedTime: wechatTime(c.TerminatedTime),
		TerminationMode: c.TerminationMode, TerminationNote: c.TerminationNote,
	}
	if c.Mode == "institutional" {
		a.SPMchID = c.MchID
	} else {
		a.MchID = c.MchID
	}
	return a
}

func (s *Simulator) globalQueryByID(r *http.Request, _ []byte) (int, any, error) {
	k, err := globalQueryKeyFrom("query", r.URL.Query())
	if err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.contracts[r.PathValue("contract_id")]
	if !ok || !k.matches(c) {
		return 0, nil, contractNotExist()
	}
	return http.StatusOK, globalAnswer(c), nil
}

func (s *Simulator) globalQueryByCode(r *http.Request, _ []byte) (int, any, error) {
	q := r.URL.Query()
	k, err := globalQueryKeyFrom("query", q)
	if err != nil {
		return 0, nil, err
	}
	if q.Get("plan_id") == "" {
		return 0, nil, paramError("query", "plan_id", "is required")
	}
	planID, err := strconv.ParseInt(q.Get("plan_id"), 10, 64)
	if err != nil || planID <= 0 {
		return 0, nil, paramError("query", "plan_id", "must be a positive integer")
	}
	code := r.PathValue("code")
	if err := checkString("path", "out_contract_code", code, true, 32); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.contracts[s.byKey[contractKey{FamilyGlobal, k.subMchID, code}]]
	if c == nil || !k.matches(c) || c.PlanID != planID {
		return 0, nil, contractNotExist()
	}
	return http.StatusOK, globalAnswer(c), nil
}

// globalTerminateBody is the body of a global terminate request.
type globalTerminateBody struct {
	AppID           string `json:"appid"`
	SPAppID         string `json:"sp_appid"`
	SubMchID        string `json:"sub_mchid"`
	SubAppID        string `json:"sub_appid"`
	TerminationNote string `json:"termination_note"`
}

func (s *Simulator) globalTerminate(r *http.Request, body []byte) (int, any, error) {
	var b globalTerminateBody
	if err := decodeBody(body, &b); err != nil {
		return 0, nil, err
	}
	mode, err := globalMode("body", b.AppID, b.SPAppID, b.SubMchID, b.SubAppID)
	if err != nil {
		return 0, nil, err
	}
	if err := checkString("body", "termination_note", b.TerminationNote, true, 256); err != nil {
		return 0, nil, err
	}
	k := globalQueryKey{mode: mode, appID: b.AppID, spAppID: b.SPAppID, subMchID: b.SubMchID, subAppID: b.SubAppID}
	s.mu.Lock()
	c, ok := s.contracts[r.PathValue("contract_id")]
	if !ok || !k.matches(c) || c.State != StateSigned {
		s.mu.Unlock()
		return 0, nil, contractNotExist()
	}
	done := s.terminateLocked(c, TerminationMerchant, b.TerminationNote)
	s.mu.Unlock()
	s.notifyTerminated(done)
	return http.StatusNoContent, nil, nil
}
