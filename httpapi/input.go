package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/contractd/contractd/domain"
	"github.com/labstack/echo/v5"
)

// Bounds on what a request may carry before any route looks at it.
const (
	// maxPathBytes bounds the decoded path: the longest route with a
	// 32-character code is far shorter.
	maxPathBytes = 256
	// maxQueryValueBytes bounds each query parameter name and value.
	maxQueryValueBytes = 256
	// maxQueryParams bounds the parameters of one query: no route takes
	// more than nine. (Go's own bound, GODEBUG urlmaxqueryparams, is
	// 10,000; ours is checked first so that the answer says what is
	// wrong.)
	maxQueryParams = 100
	// maxLoggedBytes bounds any text from outside echoed into a log line.
	maxLoggedBytes = 128
)

// checkInput is the one input boundary for the request line and headers:
// the path, every query parameter and every header value must be valid
// UTF-8 without NUL and within its length, or the request is refused with a
// PARAM_ERROR naming where the problem is, before authentication or any
// route runs. JSON bodies pass the same rules in decodeStrict.
func checkInput(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		if err := checkRequestText(c); err != nil {
			return err
		}
		return next(c)
	}
}

func checkRequestText(c *echo.Context) error {
	r := c.Request()
	var fields []domain.FieldError
	bad := func(field, reason string) { fields = append(fields, domain.FieldError{Field: field, Reason: reason}) }
	switch {
	case domain.CheckText(r.URL.Path) != "":
		bad("path", domain.CheckText(r.URL.Path))
	case len(r.URL.Path) > maxPathBytes:
		bad("path", fmt.Sprintf("must be at most %d bytes", maxPathBytes))
	}
	if n := queryParams(r.URL.RawQuery); n > maxQueryParams {
		return &domain.Error{Code: domain.CodeParamError,
			Message: fmt.Sprintf("the query holds %d parameters; at most %d are taken", n, maxQueryParams),
			Fields:  []domain.FieldError{{Field: "query", Reason: fmt.Sprintf("must hold at most %d parameters", maxQueryParams)}}}
	}
	if r.URL.RawQuery != "" {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			if strings.Contains(r.URL.RawQuery, ";") {
				bad("query", "must separate parameters with '&', not ';'")
			} else {
				bad("query", "must be a well-formed query string (percent escapes included)")
			}
		}
		names := make([]string, 0, len(q))
		for k := range q {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			name := clip(k)
			if why := domain.CheckText(k); why != "" {
				bad("query", "parameter names "+why)
				continue
			}
			if len(k) > maxQueryValueBytes {
				bad("query", fmt.Sprintf("parameter names must be at most %d bytes", maxQueryValueBytes))
				continue
			}
			for _, v := range q[k] {
				if why := domain.CheckText(v); why != "" {
					bad(name, why)
				} else if len(v) > maxQueryValueBytes {
					bad(name, fmt.Sprintf("must be at most %d bytes", maxQueryValueBytes))
				}
			}
		}
	}
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		for _, v := range r.Header[k] {
			if why := domain.CheckText(v); why != "" {
				bad("header "+k, why)
			} else if len(v) > domain.MaxTextLength {
				bad("header "+k, fmt.Sprintf("must be at most %d bytes", domain.MaxTextLength))
			}
		}
	}
	if len(fields) > 0 {
		return &domain.Error{Code: domain.CodeParamError, Message: "the request holds text contractd cannot take: " + fields[0].Field + " " + fields[0].Reason, Fields: fields}
	}
	return nil
}

// queryParams counts the parameters of a raw query as url.ParseQuery
// does: the non-empty pieces between '&'.
func queryParams(raw string) int {
	n := 0
	for raw != "" {
		var piece string
		piece, raw, _ = strings.Cut(raw, "&")
		if piece != "" {
			n++
		}
	}
	return n
}

// clip cuts text from outside to maxLoggedBytes for a log line or a
// message, on a character boundary, marking the cut.
func clip(s string) string {
	if len(s) <= maxLoggedBytes {
		return s
	}
	cut := maxLoggedBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// requireJSON refuses a body route called without Content-Type
// application/json (a charset parameter of utf-8 allowed) with
// UNSUPPORTED_MEDIA_TYPE.
func requireJSON(c *echo.Context) error {
	ct := c.Request().Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	ok := err == nil && mt == "application/json"
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			ok = false
		}
	}
	if !ok {
		shown := clip(ct)
		if ct == "" {
			shown = "none"
		}
		return domain.Errorf(codeUnsupportedMediaType, "this route takes Content-Type: application/json, not %s", shown)
	}
	return nil
}

// checkJSONText applies domain.CheckJSONText to a body.
func checkJSONText(b []byte) error {
	if fields := domain.CheckJSONText(b); len(fields) > 0 {
		return &domain.Error{Code: domain.CodeParamError, Message: "the JSON body holds text contractd cannot take: " + fields[0].Field + " " + fields[0].Reason, Fields: fields}
	}
	return nil
}

// jsonKind speaks a Go type as the JSON value it decodes from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}

// decodeError speaks a decoding error in the API's words.
func decodeError(err error) *domain.Error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		field := te.Field
		if field == "" {
			return &domain.Error{Code: domain.CodeParamError, Message: "the body must be a JSON object",
				Fields: []domain.FieldError{{Field: "body", Reason: "must be a JSON object"}}}
		}
		reason := "must be " + jsonKind(te.Type)
		return &domain.Error{Code: domain.CodeParamError, Message: field + " " + reason,
			Fields: []domain.FieldError{{Field: field, Reason: reason}}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &domain.Error{Code: domain.CodeParamError, Message: "unknown field " + clip(f),
			Fields: []domain.FieldError{{Field: clip(f), Reason: "is not a known field"}}}
	case errors.As(err, &se):
		return domain.Errorf(domain.CodeParamError, "malformed JSON body at byte %d", se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return domain.Errorf(domain.CodeParamError, "malformed JSON body: it ends early")
	case errors.Is(err, errTrailing):
		return domain.Errorf(domain.CodeParamError, "malformed JSON body: data after the object")
	}
	return domain.Errorf(domain.CodeParamError, "malformed JSON body")
}

var errTrailing = errors.New("trailing data after the JSON object")
