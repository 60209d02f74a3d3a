package domain

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Code is a stable, machine-readable error code. The HTTP layer maps each
// code to a status exactly once; everything else only names codes.
type Code string

// The domain's error codes of api.md (httpapi adds the codes of its own
// routing and media types).
const (
	CodeParamError       Code = "PARAM_ERROR"
	CodeUnauthorized     Code = "UNAUTHORIZED"
	CodeSignError        Code = "SIGN_ERROR"
	CodeForbidden        Code = "FORBIDDEN"
	CodeNotFound         Code = "CONTRACT_NOT_EXIST"
	CodeExists           Code = "CONTRACT_EXISTED"
	CodeInvalidState     Code = "INVALID_STATE"
	CodePayloadTooLarge  Code = "PAYLOAD_TOO_LARGE"
	CodeUpstream         Code = "UPSTREAM_ERROR"
	CodeUnavailable      Code = "UNAVAILABLE"
	CodeInternal         Code = "INTERNAL"
	CodeUnknownEventType Code = "UNKNOWN_EVENT_TYPE"
	// CodeInProgress: somebody else's call to WeChat for the same contract
	// is still under way after the caller's wait bound.
	CodeInProgress Code = "IN_PROGRESS"
	// CodeLeaseLost: a lease holder's token no longer holds the lease. It
	// never reaches a caller of the API: the flows act on it.
	CodeLeaseLost Code = "LEASE_LOST"
	// CodeTooManyRequests: the client address presented too many wrong
	// tokens (or console sign-ins) within the throttle's window; no token
	// from it is let through until the window has passed.
	CodeTooManyRequests Code = "TOO_MANY_REQUESTS"
)

// FieldError names one rejected field and why.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Error is a domain error: a stable code, a human message, and optional
// structured detail (rejected fields, WeChat's code and message).
type Error struct {
	Code    Code
	Message string
	Fields  []FieldError
	Detail  map[string]any
	// RetryAfter, when positive, tells the caller when asking again makes
	// sense (HTTP's Retry-After).
	RetryAfter time.Duration
	Err        error
}

// Error implements error. It says each cause once: a cause whose text the
// message already holds is not repeated.
func (e *Error) Error() string {
	if e.Err != nil && !strings.Contains(e.Message, e.Err.Error()) {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// Errorf builds a domain error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the domain error in err's chain, or
// CodeInternal when there is none.
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// IsCode reports whether err carries a domain error with the given code.
func IsCode(err error, code Code) bool {
	return err != nil && ErrorCode(err) == code
}
