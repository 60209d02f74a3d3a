package wechatpay

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/wechatpay-apiv3/wechatpay-go/core"
)

// Codes that APIError carries for failures that are not a WeChat Pay answer.
const (
	// CodeTimeout marks a call that ran out of time; it is retryable.
	CodeTimeout = "TIMEOUT"
	// CodeNetworkError marks a connection or transport failure; it is retryable.
	CodeNetworkError = "NETWORK_ERROR"
	// CodeInvalidResponseSignature marks a 2xx answer whose signature,
	// serial or timestamp failed verification; it is not retryable.
	CodeInvalidResponseSignature = "INVALID_RESPONSE_SIGNATURE"
	// CodeInvalidResponse marks a verified 2xx answer whose body could not be
	// decoded or lacks what the call needs; it is not retryable.
	CodeInvalidResponse = "INVALID_RESPONSE"
	// CodeCanceled marks a call whose context was canceled by the caller; it
	// is not retryable.
	CodeCanceled = "CANCELED"
	// CodeClientError marks a call refused before anything was sent: a bad
	// argument or a signing failure; it is not retryable.
	CodeClientError = "CLIENT_ERROR"
)

// WeChat Pay error codes that mean "try again with the same parameters".
const (
	codeSystemError    = "SYSTEM_ERROR"
	codeSystemErrorOld = "SYSTEMERROR"
	codeFrequencyLimit = "FREQUENCY_LIMIT_EXCEED"
)

// APIError describes any failed call: a non-2xx answer from WeChat Pay (with
// its status, code, message and detail) or a local failure with one of the
// Code* constants of this package.
type APIError struct {
	Op         string          // the call that failed, e.g. "global pre-sign"
	StatusCode int             // HTTP status of WeChat Pay's answer; 0 when none arrived
	Code       string          // WeChat Pay's error code or one of the Code* constants
	Message    string          // WeChat Pay's message or a short local description
	Detail     json.RawMessage // WeChat Pay's "detail" object, when present
	Retryable  bool            // whether repeating the same call may succeed
	Err        error           // the underlying error
}

// Error describes the failure in one line.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("wechatpay")
	if e.Op != "" {
		b.WriteString(": ")
		b.WriteString(e.Op)
	}
	if e.StatusCode != 0 {
		b.WriteString(": HTTP ")
		b.WriteString(strconv.Itoa(e.StatusCode))
	}
	b.WriteString(": ")
	b.WriteString(e.Code)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.StatusCode == 0 && e.Err != nil && e.Err.Error() != e.Message {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *APIError) Unwrap() error { return e.Err }

// IsRetryable reports whether err holds an *APIError that says repeating the
// same call may succeed.
func IsRetryable(err error) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.Retryable
}

// isRetryableAnswer reports whether a WeChat Pay error answer calls for a retry.
func isRetryableAnswer(status int, code string) bool {
	switch code {
	case codeSystemError, codeSystemErrorOld, codeFrequencyLimit:
		return true
	}
	return status >= http.StatusInternalServerError || status == http.StatusTooManyRequests
}

// responseSignatureError marks a failed verification of a 2xx answer.
type responseSignatureError struct{ err error }

func (e *responseSignatureError) Error() string { return "verify response: " + e.err.Error() }
func (e *responseSignatureError) Unwrap() error { return e.err }

// transportError marks a failure to read an answer's body.
type transportError struct{ err error }

func (e *transportError) Error() string { return "read response: " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// classify turns any error from core.Client into an *APIError.
func classify(op string, err error) *APIError {
	var (
		coreErr *core.APIError
		sigErr  *responseSignatureError
	)
	switch {
	case errors.As(err, &coreErr):
		return fromCoreError(op, coreErr)
	case errors.As(err, &sigErr):
		return &APIError{Op: op, Code: CodeInvalidResponseSignature, Message: "response signature verification failed", Err: err}
	case isTimeout(err):
		return &APIError{Op: op, Code: CodeTimeout, Message: "call timed out", Retryable: true, Err: err}
	case errors.Is(err, context.Canceled):
		return &APIError{Op: op, Code: CodeCanceled, Message: "call canceled", Err: err}
	case isNetwork(err):
		return &APIError{Op: op, Code: CodeNetworkError, Message: "network failure", Retryable: true, Err: err}
	default:
		return &APIError{Op: op, Code: CodeClientError, Message: "request not sent", Err: err}
	}
}

// isTimeout reports deadline and I/O timeout errors.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}

// isNetwork reports connection and transport failures.
func isNetwork(err error) bool {
	var (
		urlErr *url.Error
		netErr net.Error
		trErr  *transportError
	)
	return errors.As(err, &urlErr) || errors.As(err, &netErr) || errors.As(err, &trErr) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// fromCoreError copies a WeChat Pay error answer into an *APIError.
func fromCoreError(op string, e *core.APIError) *APIError {
	out := &APIError{
		Op:         op,
		StatusCode: e.StatusCode,
		Code:       e.Code,
		Message:    e.Message,
		Retryable:  isRetryableAnswer(e.StatusCode, e.Code),
		Err:        e,
	}
	var body struct {
		Detail json.RawMessage `json:"detail"`
	}
	if json.Unmarshal([]byte(e.Body), &body) == nil && len(body.Detail) > 0 && string(body.Detail) != "null" {
		out.Detail = body.Detail
	}
	if out.Code == "" {
		out.Code = "HTTP_" + strconv.Itoa(e.StatusCode)
	}
	if out.Message == "" {
		out.Message = truncate(strings.TrimSpace(e.Body), 200)
	}
	return out
}

// truncate shortens s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// clientError reports a call refused before sending.
func clientError(op, message string) *APIError {
	return &APIError{Op: op, Code: CodeClientError, Message: message}
}

// invalidResponse reports a verified answer we cannot use.
func invalidResponse(op, message string, err error) *APIError {
	return &APIError{Op: op, Code: CodeInvalidResponse, Message: message, Err: err}
}
