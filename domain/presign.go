package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// PreSignRequest is what an app server asks for when it starts a signing
// flow. The merchant's app ids, merchant id and notification URL are never
// part of it: they come from configuration.
type PreSignRequest struct {
	Product                Product `json:"product"`
	Channel                Channel `json:"channel"`
	OutContractCode        string  `json:"out_contract_code"`
	SubMchID               string  `json:"sub_mchid,omitempty"`
	SubAppID               string  `json:"sub_appid,omitempty"`
	PlanID                 *int64  `json:"plan_id,omitempty"`
	UserDisplayName        string  `json:"user_display_name,omitempty"`
	ServiceID              *int64  `json:"service_id,omitempty"`
	ContractDisplayAccount string  `json:"contract_display_account,omitempty"`
	OpenID                 string  `json:"openid,omitempty"`
	SubOpenID              string  `json:"sub_openid,omitempty"`
	UserClientIP           string  `json:"user_client_ip,omitempty"`
	ExpiredTime            string  `json:"expired_time,omitempty"`
	ReturnURL              string  `json:"return_url,omitempty"`
	ReturnAppID            string  `json:"return_appid,omitempty"`
}

// Session lifetimes WeChat applies, and the window it accepts for
// expired_time.
const (
	MinSessionLifetime      = 5 * time.Minute
	ShortSessionLifetime    = 10 * time.Minute // h5 and web
	LongSessionLifetime     = 2 * time.Hour    // every other channel, and password-exempt
	maxCodeLength           = 32
	maxDisplayNameLength    = 32
	maxOpenIDLength         = 128
	maxIDLength             = 32
	maxURLLength            = 256
	maxClientIPLength       = 32
	maxDisplayAccountLength = 32
)

// productChannels lists the channels of each product; openIDChannels,
// clientIPChannels and returnURLChannels the channels on which WeChat takes
// each optional field.
var (
	productChannels = map[Product][]Channel{
		ProductPapay:          {ChannelApp, ChannelMiniProgram, ChannelH5, ChannelJSAPI, ChannelWeb},
		ProductPasswordExempt: {ChannelMiniProgram},
	}
	openIDChannels    = []Channel{ChannelMiniProgram, ChannelApp, ChannelJSAPI}
	clientIPChannels  = []Channel{ChannelMiniProgram, ChannelApp, ChannelH5}
	returnURLChannels = []Channel{ChannelJSAPI, ChannelWeb, ChannelApp}
	returnAppChannels = []Channel{ChannelH5}
)

func hasChannel(list []Channel, c Channel) bool {
	for _, v := range list {
		if v == c {
			return true
		}
	}
	return false
}

// fieldErrors collects field rejections in the order they are found.
type fieldErrors []FieldError

func (f *fieldErrors) add(field, format string, args ...any) {
	*f = append(*f, FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// text checks a string field's presence and length in characters.
func (f *fieldErrors) text(field, v string, required bool, max int) bool {
	switch {
	case v == "" && required:
		f.add(field, "is required")
	case v == "":
		return false
	case CheckText(v) != "":
		f.add(field, "%s", CheckText(v))
	case utf8.RuneCountInString(v) > max:
		f.add(field, "must be at most %d characters", max)
	default:
		return true
	}
	return false
}

// refuse rejects a field that must not be given in this context.
func (f *fieldErrors) refuse(field string, given bool, why string) {
	if given {
		f.add(field, "not accepted %s", why)
	}
}

// displayText checks a name shown to the user: 1-3 byte UTF-8 characters
// only, and displayable as one line (CheckDisplayText).
func (f *fieldErrors) displayText(field, v string, max int) {
	if !f.text(field, v, true, max) {
		return
	}
	if why := CheckDisplayText(v); why != "" {
		f.add(field, "%s", why)
		return
	}
	for _, r := range v {
		if utf8.RuneLen(r) > 3 {
			f.add(field, "must contain only 1-3 byte UTF-8 characters (no emoji or other 4-byte characters)")
			return
		}
	}
}

// openID checks an openid: present when required, within its length, and
// visible ASCII (CheckOpenID). It reports whether one was given and kept
// the rule.
func (f *fieldErrors) openID(field, v string, required bool) bool {
	if !f.text(field, v, required, maxOpenIDLength) {
		return false
	}
	if why := CheckOpenID(v); why != "" {
		f.add(field, "%s", why)
		return false
	}
	return true
}

// code checks out_contract_code: 1-32 visible ASCII characters other than
// '/', so that it can stand in a URL path unescaped.
func (f *fieldErrors) code(field, v string) {
	if !f.text(field, v, true, maxCodeLength) {
		return
	}
	if why := codeChars(v); why != "" {
		f.add(field, "%s", why)
	}
}

// PreSignActionName is the name of the action that opens a signing session.
// No out_contract_code may be it: wherever contract codes and action names
// share one namespace (an address naming a contract or an action), a
// contract so named would shadow the action.
const PreSignActionName = "pre-sign"

// codeChars says why v's characters break the out_contract_code rule, or "".
func codeChars(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] <= 0x20 || v[i] >= 0x7f || v[i] == '/' || v[i] == '?' || v[i] == '#' || v[i] == '%' {
			return "must be visible ASCII without '/', '?', '#' or '%'"
		}
	}
	if v == PreSignActionName {
		return fmt.Sprintf("%q is reserved", PreSignActionName)
	}
	return ""
}

// CheckCode applies the out_contract_code rule (1-32 visible ASCII
// characters, no '/', '?', '#' or '%', not the reserved "pre-sign") to v and
// says why it breaks it, or "" when v keeps it. sub_mchid follows the same
// rule.
func CheckCode(v string) string {
	var fe fieldErrors
	fe.code("x", v)
	if len(fe) > 0 {
		return fe[0].Reason
	}
	return ""
}

// Validate checks every field rule of wechatpay-papay.md for mode at time
// now, fills defaults (product papay), and returns a PARAM_ERROR listing each
// rejected field, or nil.
func (r *PreSignRequest) Validate(mode Mode, now time.Time) error {
	var fe fieldErrors
	if r.Product == "" {
		r.Product = ProductPapay
	}
	channels, ok := productChannels[r.Product]
	if !ok {
		fe.add("product", "must be %q or %q", ProductPapay, ProductPasswordExempt)
	}
	if r.Channel == "" {
		fe.add("channel", "is required")
	} else if ok && !hasChannel(channels, r.Channel) {
		fe.add("channel", "must be one of %v for product %s", channels, r.Product)
	}
	fe.code("out_contract_code", r.OutContractCode)

	switch mode {
	case ModeInstitutional:
		if f := fe.text("sub_mchid", r.SubMchID, true, maxIDLength); f {
			fe.code("sub_mchid", r.SubMchID)
		}
		fe.text("sub_appid", r.SubAppID, false, maxIDLength)
	default:
		fe.refuse("sub_mchid", r.SubMchID != "", "in common mode")
		fe.refuse("sub_appid", r.SubAppID != "", "in common mode")
	}

	switch r.Product {
	case ProductPapay:
		r.validatePapay(&fe, now)
	case ProductPasswordExempt:
		r.validatePasswordExempt(&fe, mode)
	}
	if len(fe) > 0 {
		return &Error{Code: CodeParamError, Message: "the request breaks field rules", Fields: fe}
	}
	return nil
}

func (r *PreSignRequest) validatePapay(fe *fieldErrors, now time.Time) {
	switch {
	case r.PlanID == nil:
		fe.add("plan_id", "is required")
	case *r.PlanID <= 0:
		fe.add("plan_id", "must be a positive integer")
	}
	fe.displayText("user_display_name", r.UserDisplayName, maxDisplayNameLength)
	fe.refuse("service_id", r.ServiceID != nil, "for product papay")
	fe.refuse("contract_display_account", r.ContractDisplayAccount != "", "for product papay")
	fe.refuse("sub_openid", r.SubOpenID != "", "for product papay")

	ch := r.Channel
	if fe.openID("openid", r.OpenID, false) && !hasChannel(openIDChannels, ch) {
		fe.add("openid", "not accepted for channel %s", ch)
	}
	if fe.text("user_client_ip", r.UserClientIP, false, maxClientIPLength) {
		if !hasChannel(clientIPChannels, ch) {
			fe.add("user_client_ip", "not accepted for channel %s", ch)
		} else if net.ParseIP(r.UserClientIP) == nil {
			fe.add("user_client_ip", "must be an IPv4 or IPv6 address")
		}
	}
	if fe.text("return_url", r.ReturnURL, false, maxURLLength) {
		if !hasChannel(returnURLChannels, ch) {
			fe.add("return_url", "not accepted for channel %s", ch)
		} else if !absoluteHTTPURL(r.ReturnURL) {
			fe.add("return_url", "must be an absolute http(s) URL")
		}
	}
	if fe.text("return_appid", r.ReturnAppID, false, maxIDLength) && !hasChannel(returnAppChannels, ch) {
		fe.add("return_appid", "not accepted for channel %s", ch)
	}
	if r.ExpiredTime != "" {
		t, err := time.Parse(time.RFC3339, r.ExpiredTime)
		if err != nil {
			fe.add("expired_time", "must be an RFC3339 time such as 2026-11-22T13:29:35+08:00")
			return
		}
		max := r.Channel.maxLifetime()
		if d := t.Sub(now); d <= MinSessionLifetime || d >= max {
			fe.add("expired_time", "must be between %s after the request for channel %s", spokenRange(MinSessionLifetime, max), ch)
		}
	}
}

func (r *PreSignRequest) validatePasswordExempt(fe *fieldErrors, mode Mode) {
	switch {
	case r.ServiceID == nil:
		fe.add("service_id", "is required")
	case *r.ServiceID <= 0:
		fe.add("service_id", "must be a positive integer")
	}
	fe.displayText("contract_display_account", r.ContractDisplayAccount, maxDisplayAccountLength)
	fe.openID("openid", r.OpenID, true)
	if mode == ModeInstitutional {
		fe.openID("sub_openid", r.SubOpenID, false)
	} else {
		fe.refuse("sub_openid", r.SubOpenID != "", "in common mode")
	}
	fe.refuse("plan_id", r.PlanID != nil, "for product password_exempt")
	fe.refuse("user_display_name", r.UserDisplayName != "", "for product password_exempt")
	fe.refuse("user_client_ip", r.UserClientIP != "", "for product password_exempt")
	fe.refuse("return_url", r.ReturnURL != "", "for product password_exempt")
	fe.refuse("return_appid", r.ReturnAppID != "", "for product password_exempt")
	fe.refuse("expired_time", r.ExpiredTime != "", "for product password_exempt (its session always lives 2 hours)")
}

// spoken renders a whole number of minutes or hours the way the API's
// messages speak ("5 minutes", "2 hours"), never Go's "5m0s".
func spoken(d time.Duration) string {
	if d%time.Hour == 0 {
		return plural(int64(d/time.Hour), "hour")
	}
	return plural(int64(d/time.Minute), "minute")
}

// spokenRange renders "5 and 10 minutes", or "5 minutes and 2 hours" when
// the units differ.
func spokenRange(lo, hi time.Duration) string {
	l, h := spoken(lo), spoken(hi)
	lu, hu := l[strings.IndexByte(l, ' '):], h[strings.IndexByte(h, ' '):]
	if lu == hu {
		return strings.TrimSuffix(l, lu) + " and " + h
	}
	return l + " and " + h
}

func plural(n int64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// maxLifetime is the longest session WeChat grants on a channel, and the
// lifetime it applies when expired_time is absent.
func (c Channel) maxLifetime() time.Duration {
	if c == ChannelH5 || c == ChannelWeb {
		return ShortSessionLifetime
	}
	return LongSessionLifetime
}

// SessionExpiry returns when a session opened at now for this request
// expires: expired_time when given, else WeChat's default for the channel.
// It assumes Validate passed.
func (r *PreSignRequest) SessionExpiry(now time.Time) time.Time {
	if r.ExpiredTime != "" {
		if t, err := time.Parse(time.RFC3339, r.ExpiredTime); err == nil {
			return t.UTC()
		}
	}
	if r.Product == ProductPasswordExempt {
		return now.Add(LongSessionLifetime).UTC()
	}
	return now.Add(r.Channel.maxLifetime()).UTC()
}

// Key returns the key of the contract the request is about.
func (r *PreSignRequest) Key() Key {
	return Key{SubMchID: r.SubMchID, OutContractCode: r.OutContractCode}
}

// Fingerprint is a digest of the request's parameters: two requests with the
// same fingerprint ask for the same session.
func (r *PreSignRequest) Fingerprint() string {
	b, _ := json.Marshal(r) // a struct of strings and ints always marshals
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func absoluteHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// ValidNotifyURL reports why a notification URL would be refused by WeChat
// (it must start with https://, carry no query and be at most 256
// characters), or "" when it is acceptable.
func ValidNotifyURL(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "":
		return "must be an absolute URL"
	case u.Scheme != "https":
		return "must start with https://"
	case u.RawQuery != "" || u.ForceQuery:
		return "must not carry a query string"
	case utf8.RuneCountInString(s) > maxURLLength:
		return fmt.Sprintf("must be at most %d characters", maxURLLength)
	}
	return ""
}
