package wechatpaysim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// maxRequestBody bounds merchant request bodies.
const maxRequestBody = 1 << 20

// apiError is an error answer of the merchant API: {"code","message","detail"}.
type apiError struct {
	status  int
	code    string
	message string
	detail  map[string]any
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

// paramError is WeChat's PARAM_ERROR naming the field at fault.
func paramError(location, field, issue string) *apiError {
	return &apiError{
		status:  http.StatusBadRequest,
		code:    "PARAM_ERROR",
		message: fmt.Sprintf("invalid parameter %s: %s", field, issue),
		detail:  map[string]any{"field": field, "location": location, "issue": issue},
	}
}

func contractNotExist() *apiError {
	return &apiError{status: http.StatusForbidden, code: "CONTRACT_NOT_EXIST", message: "the contract does not exist"}
}

func contractExisted() *apiError {
	return &apiError{status: http.StatusForbidden, code: "CONTRACT_EXISTED",
		message: "the contract is already signed; use another out_contract_code"}
}

func notFound() *apiError {
	return &apiError{status: http.StatusNotFound, code: "NOT_FOUND", message: "no such API"}
}

// apiFunc handles a verified merchant request. It returns the status and answer (nil for
// none) or an error, an *apiError for WeChat's error answers.
type apiFunc func(r *http.Request, body []byte) (int, any, error)

// api wraps a merchant API handler: it reads the raw body once, applies latency faults,
// verifies the Authorization header, applies error faults, signs the answer and records
// the exchange.
func (s *Simulator) api(fn apiFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := RecordedRequest{
			Method:   r.Method,
			Path:     r.URL.Path,
			RawQuery: r.URL.RawQuery,
			Header:   r.Header.Clone(),
			At:       s.now(),
		}
		body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
		rec.Body = body
		if d := s.latency(r.URL.Path); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
			}
		}
		status, answer, err := http.StatusOK, any(nil), error(nil)
		if readErr != nil {
			err = &apiError{status: http.StatusBadRequest, code: "INVALID_REQUEST",
				message: fmt.Sprintf("cannot read the request body: %v", readErr)}
		} else if verr := s.verifyRequest(r, body); verr != nil {
			err = &apiError{status: http.StatusUnauthorized, code: "SIGN_ERROR", message: verr.Error()}
		} else {
			rec.Verified = true
			if ferr := s.takeFault(r.URL.Path); ferr != nil {
				err = ferr
			} else {
				status, answer, err = fn(r, body)
			}
		}
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) {
				s.log.Error("wechatpaysim: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
				ae = &apiError{status: http.StatusInternalServerError, code: "SYSTEM_ERROR", message: "system error"}
			}
			detail := ae.detail
			if detail == nil {
				detail = map[string]any{}
			}
			status = ae.status
			answer = map[string]any{"code": ae.code, "message": ae.message, "detail": detail}
			rec.ErrorCode = ae.code
		}
		rec.Status = status
		// Record before answering, so that a caller holding the answer finds the record.
		s.mu.Lock()
		s.requests = append(s.requests, rec)
		s.mu.Unlock()
		s.writeSigned(w, status, answer, isCertificatePath(r.URL.Path) && s.CurrentFaults().TamperCertificateSignature)
		s.log.Info("wechatpaysim: merchant request", "method", r.Method, "path", r.URL.Path,
			"status", status, "code", rec.ErrorCode)
	})
}

// writeSigned writes a platform-signed answer. answer nil means an empty body. With
// tamperSignature the signature is one over another message, so that it does not verify.
func (s *Simulator) writeSigned(w http.ResponseWriter, status int, answer any, tamperSignature bool) {
	var body []byte
	if answer != nil {
		b, err := json.Marshal(answer)
		if err != nil {
			s.log.Error("wechatpaysim: encode answer", "err", err)
			status, b = http.StatusInternalServerError, []byte(`{"code":"SYSTEM_ERROR","message":"system error","detail":{}}`)
		}
		body = b
	}
	f := s.CurrentFaults()
	ts, nonce, sig, serial, err := s.signBody(body)
	if err == nil && tamperSignature {
		_, _, sig, _, err = s.signBody(append([]byte("tampered"), body...))
	}
	if err != nil {
		s.log.Error("wechatpaysim: sign answer", "err", err)
		http.Error(w, "cannot sign the answer", http.StatusInternalServerError)
		return
	}
	if f.TamperResponses {
		if len(body) > 2 && body[0] == '{' {
			body = append([]byte(`{"tampered":true,`), body[1:]...)
		} else {
			nonce = randomString(32, alnum)
		}
	}
	h := w.Header()
	h.Set("Request-ID", randomString(32, "0123456789ABCDEF"))
	h.Set("Wechatpay-Timestamp", ts)
	h.Set("Wechatpay-Nonce", nonce)
	h.Set("Wechatpay-Signature", sig)
	h.Set("Wechatpay-Serial", s.serial(f, serial))
	if body != nil {
		h.Set("Content-Type", "application/json; charset=utf-8")
	}
	w.WriteHeader(status)
	if body != nil {
		_, _ = w.Write(body)
	}
}

// serial is the Wechatpay-Serial sent with answers and notifications: the fault's override,
// else the serial of the key that signed.
func (s *Simulator) serial(f Faults, signed string) string {
	if f.OverrideSerial != "" {
		return f.OverrideSerial
	}
	return signed
}

// latency returns the injected latency for a request path.
func (s *Simulator) latency(path string) time.Duration {
	f := s.CurrentFaults()
	if f.LatencyMS <= 0 || !f.applies(path) {
		return 0
	}
	return time.Duration(f.LatencyMS) * time.Millisecond
}

func (f Faults) applies(path string) bool {
	return f.PathContains == "" || strings.Contains(path, f.PathContains)
}

// takeFault decides whether an injected error answers this call, counting ErrorCount down.
func (s *Simulator) takeFault(path string) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &s.faults
	if f.ErrorCode == "" || !f.applies(path) {
		return nil
	}
	switch {
	case f.ErrorCount > 0:
		f.ErrorCount--
	case f.ErrorRate > 0 && rand.Float64() < f.ErrorRate:
	default:
		return nil
	}
	return &apiError{status: f.status(), code: f.ErrorCode, message: "injected fault"}
}

// decodeBody decodes a JSON object body, naming the field of a type mismatch.
func decodeBody(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return paramError("body", te.Field, "has the wrong type "+te.Value)
		}
		return &apiError{status: http.StatusBadRequest, code: "PARAM_ERROR",
			message: "the body is not a valid JSON object: " + err.Error(), detail: map[string]any{"location": "body"}}
	}
	return nil
}

// checkString checks a string[min,max] field counted in characters; empty means absent.
func checkString(location, name, v string, required bool, maxChars int) error {
	if v == "" {
		if required {
			return paramError(location, name, "is required")
		}
		return nil
	}
	if !utf8.ValidString(v) {
		return paramError(location, name, "is not valid UTF-8")
	}
	if n := utf8.RuneCountInString(v); n > maxChars {
		return paramError(location, name, fmt.Sprintf("is %d characters long, at most %d allowed", n, maxChars))
	}
	return nil
}

// checkNo4Byte rejects characters outside the 1-3 byte UTF-8 range (emoji and the like).
func checkNo4Byte(location, name, v string) error {
	for _, r := range v {
		if utf8.RuneLen(r) > 3 {
			return paramError(location, name, "contains a character longer than 3 bytes in UTF-8 (emoji are not allowed)")
		}
	}
	return nil
}

// checkNotifyURL checks a notification URL: https, no query, at most 256 characters.
func checkNotifyURL(name, v string) error {
	if err := checkString("body", name, v, true, 256); err != nil {
		return err
	}
	if !strings.HasPrefix(v, "https://") {
		return paramError("body", name, "must start with https://")
	}
	if strings.ContainsAny(v, "?#") {
		return paramError("body", name, "must not carry a query string or fragment")
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		return paramError("body", name, "is not a valid URL")
	}
	return nil
}

// firstError returns the first non-nil error.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// wechatTime formats t in China Standard Time, as WeChat does.
func wechatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(time.FixedZone("CST", 8*3600)).Format(time.RFC3339)
}
