package wechatpaysim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Terms are what a contract is about: the product family, channel and mode, the merchant,
// the template and the merchant's code. A session carries them, and the contract signed in it
// copies them.
type Terms struct {
	// Family is FamilyGlobal or FamilyDomestic.
	Family string `json:"family"`
	// Channel is app, mini_program, h5, jsapi or web (global) or mini_program (domestic).
	Channel string `json:"channel"`
	// Mode is common or institutional (global), or normal, service-provider or ecommerce (domestic).
	Mode string `json:"mode"`
	// MchID is the merchant (or service provider) that opened the session.
	MchID string `json:"mchid"`
	// AppID is the merchant's appid (common and domestic normal/ecommerce modes).
	AppID string `json:"appid,omitempty"`
	// SPAppID is the service provider's appid (institutional and service-provider modes).
	SPAppID string `json:"sp_appid,omitempty"`
	// SubMchID is the sub-merchant (institutional and service-provider modes).
	SubMchID string `json:"sub_mchid,omitempty"`
	// SubAppID is the sub-merchant's appid, when given.
	SubAppID string `json:"sub_appid,omitempty"`
	// PlanID is the global contract template id.
	PlanID int64 `json:"plan_id,omitempty"`
	// ServiceID is the domestic password-exempt service id.
	ServiceID int64 `json:"service_id,omitempty"`
	// OutContractCode is the merchant's contract code.
	OutContractCode string `json:"out_contract_code"`
	// DisplayName is user_display_name (global) or contract_display_account (domestic).
	DisplayName string `json:"display_name"`
}

// Session is a signing session created by a successful pre-sign call.
type Session struct {
	// ID is the global session_id or the domestic pre_entrustweb_id.
	ID string `json:"id"`
	Terms
	// NotifyURL is success_notify_url (global) or notify_url (domestic).
	NotifyURL string `json:"notify_url"`
	// OpenID is the user's openid (sp_openid in service-provider mode), when given.
	OpenID string `json:"openid,omitempty"`
	// SubOpenID is the user's openid under SubAppID, when given.
	SubOpenID string `json:"sub_openid,omitempty"`
	// UserClientIP, ReturnURL and ReturnAppID are the optional global pre-sign fields.
	UserClientIP string `json:"user_client_ip,omitempty"`
	ReturnURL    string `json:"return_url,omitempty"`
	ReturnAppID  string `json:"return_appid,omitempty"`
	// CreatedAt is when the pre-sign call was answered.
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when the session stops accepting a signature.
	ExpiresAt time.Time `json:"expires_at"`
	// ContractID is set once the session has been used to sign.
	ContractID string `json:"contract_id,omitempty"`
}

// Contract is a contract the simulated user signed. Its identity fields are copied from the
// session it was signed in (see Session).
type Contract struct {
	// ContractID is WeChat's contract id (20 digits).
	ContractID string `json:"contract_id"`
	// Terms are those of the session the contract was signed in.
	Terms
	// OpenID is the signing user; SubOpenID the same user under SubAppID.
	OpenID    string `json:"openid"`
	SubOpenID string `json:"sub_openid,omitempty"`
	// SessionID is the session the contract was signed in.
	SessionID string `json:"session_id"`
	// State is StateSigned or StateTerminated.
	State string `json:"state"`
	// SignedTime is when the user signed.
	SignedTime time.Time `json:"signed_time"`
	// ExpiredTime is the contract's own expiry (contract_expired_time).
	ExpiredTime time.Time `json:"expired_time"`
	// TerminatedTime, TerminationMode (USER or MERCHANT) and TerminationNote describe the
	// termination, once there is one.
	TerminatedTime  time.Time `json:"terminated_time,omitzero"`
	TerminationMode string    `json:"termination_mode,omitempty"`
	TerminationNote string    `json:"termination_note,omitempty"`
}

// SignRequest selects the session a simulated user signs: by SessionID (a global session_id
// or a domestic pre_entrustweb_id), or by OutContractCode (and SubMchID in institutional
// mode), which picks the latest unused session for that code.
type SignRequest struct {
	// SessionID is a global session_id or a domestic pre_entrustweb_id.
	SessionID string `json:"session_id,omitempty"`
	// OutContractCode, with SubMchID, selects the latest unused session for the code when
	// SessionID is empty.
	OutContractCode string `json:"out_contract_code,omitempty"`
	SubMchID        string `json:"sub_mchid,omitempty"`
	// OpenID is the signing user's openid when the session did not name one; a generated
	// openid is used when both are empty.
	OpenID string `json:"openid,omitempty"`
}

// RecordedRequest is one merchant API request as the simulator received and answered it.
type RecordedRequest struct {
	// Method, Path and RawQuery are the request line's parts.
	Method   string `json:"method"`
	Path     string `json:"path"`
	RawQuery string `json:"raw_query"`
	// Body is the raw body as received (rendered as a string in JSON).
	Body []byte `json:"-"`
	// Header holds the request headers.
	Header http.Header `json:"header"`
	// Verified reports whether the Authorization signature, mchid, serial and clock checked out.
	Verified bool `json:"verified"`
	// Status is the HTTP status of the answer.
	Status int `json:"status"`
	// ErrorCode is the answer's error code, empty on success.
	ErrorCode string `json:"error_code,omitempty"`
	// At is when the request arrived, by the simulator's clock.
	At time.Time `json:"at"`
}

// MarshalJSON renders the request with its body as a string.
func (r RecordedRequest) MarshalJSON() ([]byte, error) {
	type plain RecordedRequest
	return json.Marshal(struct {
		plain
		Body string `json:"body"`
	}{plain(r), string(r.Body)})
}

// Delivery is one notification as the simulator delivers it to one receiver; duplicates
// injected by Faults.DuplicateDeliveries and signature probes are deliveries of their own
// sharing the notification's ID.
type Delivery struct {
	// ID is the notification id (the envelope's "id").
	ID string `json:"id"`
	// EventType is PAPAY.SIGN, PAPAY.TERMINATE, ENTRUST.SIGN or ENTRUST.TERMINATE.
	EventType string `json:"event_type"`
	// URL is where the notification is posted; NotifyURL the URL WeChat was given (they
	// differ behind Config.NotifyTarget).
	URL       string `json:"url"`
	NotifyURL string `json:"notify_url"`
	// Family, OutContractCode, SubMchID and ContractID name the contract notified about.
	Family          string `json:"family"`
	OutContractCode string `json:"out_contract_code"`
	SubMchID        string `json:"sub_mchid,omitempty"`
	ContractID      string `json:"contract_id"`
	// Copy is 0 for the original and 1..N for injected duplicates.
	Copy int `json:"copy"`
	// Attempts lists every POST made, oldest first.
	Attempts []Attempt `json:"attempts"`
	// Done reports that a receiver acknowledged with a 2xx status.
	Done bool `json:"done"`
	// GaveUp reports that every scheduled attempt failed.
	GaveUp bool `json:"gave_up"`
	// Dropped reports that Faults.DropDeliveries suppressed the notification.
	Dropped bool `json:"dropped"`
	// Probe marks a copy sent with a WECHATPAY/SIGNTEST/ signature; it is never retried.
	Probe bool `json:"probe"`
	// Held reports that the delivery waits for the contract's termination notification
	// (Faults.ReorderSignTerminate).
	Held bool `json:"held"`
	// Body is the envelope as posted; Resource is its decrypted resource.
	Body     json.RawMessage `json:"body"`
	Resource json.RawMessage `json:"resource"`
}

// Attempt is one POST of a delivery.
type Attempt struct {
	// At is when the POST started, by the simulator's clock.
	At time.Time `json:"at"`
	// Status is the receiver's HTTP status, 0 when no answer came.
	Status int `json:"status,omitempty"`
	// Err describes a transport failure.
	Err string `json:"err,omitempty"`
	// DurationMS is how long the POST took, in milliseconds, until its
	// answer or its failure (what a load test reads as the receiver's
	// latency).
	DurationMS float64 `json:"duration_ms"`
}

// Faults injects failures into the simulator's answers and deliveries.
type Faults struct {
	// ErrorCode is the code of injected merchant API errors, e.g. SYSTEM_ERROR, PARAM_ERROR,
	// FREQUENCY_LIMIT_EXCEED.
	ErrorCode string `json:"error_code"`
	// ErrorStatus is the HTTP status of injected errors; by default 500 for SYSTEM_ERROR and
	// SYSTEMERROR, 400 for PARAM_ERROR, 429 for FREQUENCY_LIMIT_EXCEED, 400 for other codes.
	ErrorStatus int `json:"error_status"`
	// ErrorCount makes the next N matching merchant API calls fail (0 = use ErrorRate).
	ErrorCount int `json:"error_count"`
	// ErrorRate is the fraction (0..1) of matching calls failing when ErrorCount is 0.
	ErrorRate float64 `json:"error_rate"`
	// PathContains limits error and latency faults to request paths containing it.
	PathContains string `json:"path_contains"`
	// LatencyMS delays merchant API answers.
	LatencyMS int `json:"latency_ms"`
	// DuplicateDeliveries sends each notification this many extra times, concurrently.
	DuplicateDeliveries int `json:"duplicate_deliveries"`
	// DropDeliveries records notifications as dropped and never sends them.
	DropDeliveries bool `json:"drop_deliveries"`
	// ReorderSignTerminate holds each sign notification until the contract's termination
	// notification has been delivered, then sends the (stale) sign after it.
	ReorderSignTerminate bool `json:"reorder_sign_terminate"`
	// ProbeSignatures sends, before each notification, a copy whose Wechatpay-Signature starts
	// with "WECHATPAY/SIGNTEST/"; probes are recorded as Probe deliveries and never retried.
	ProbeSignatures bool `json:"probe_signatures"`
	// TamperResponses changes answer bodies after signing (for empty bodies, the nonce), so
	// that their signatures no longer verify.
	TamperResponses bool `json:"tamper_responses"`
	// TamperCertificateSignature makes the certificate downloads carry a signature over
	// another message, so that they do not verify.
	TamperCertificateSignature bool `json:"tamper_certificate_signature"`
	// CorruptCertificateCiphertext changes a byte of every encrypted certificate in the
	// certificate downloads, so that it does not decrypt.
	CorruptCertificateCiphertext bool `json:"corrupt_certificate_ciphertext"`
	// OverrideSerial, when set, is sent as Wechatpay-Serial on answers and notifications in
	// place of the configured platform serial (the signature still uses the platform key).
	OverrideSerial string `json:"override_serial"`
}

// Validate reports whether the faults make sense.
func (f Faults) Validate() error {
	switch {
	case f.ErrorCount < 0:
		return errors.New("error_count must not be negative")
	case f.ErrorRate < 0 || f.ErrorRate > 1:
		return fmt.Errorf("error_rate %v is outside 0..1", f.ErrorRate)
	case f.ErrorStatus != 0 && (f.ErrorStatus < 400 || f.ErrorStatus > 599):
		return fmt.Errorf("error_status %d is not a 4xx or 5xx status", f.ErrorStatus)
	case (f.ErrorCount > 0 || f.ErrorRate > 0) && f.ErrorCode == "":
		return errors.New("error_code is required with error_count or error_rate")
	case f.LatencyMS < 0 || f.LatencyMS > 60_000:
		return fmt.Errorf("latency_ms %d is outside 0..60000", f.LatencyMS)
	case f.DuplicateDeliveries < 0 || f.DuplicateDeliveries > 20:
		return fmt.Errorf("duplicate_deliveries %d is outside 0..20", f.DuplicateDeliveries)
	}
	return nil
}

// status returns the HTTP status for the injected error.
func (f Faults) status() int {
	if f.ErrorStatus != 0 {
		return f.ErrorStatus
	}
	switch f.ErrorCode {
	case "SYSTEM_ERROR", "SYSTEMERROR":
		return http.StatusInternalServerError
	case "FREQUENCY_LIMIT_EXCEED":
		return http.StatusTooManyRequests
	default:
		return http.StatusBadRequest
	}
}
