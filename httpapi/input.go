package httpapi

import (
	"bytes"
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
	if r.URL.RawQuery != "" {
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			bad("query", "must be a well-formed query string (percent escapes included)")
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
		return domain.Errorf(domain.CodeUnsupportedMediaType, "this route takes Content-Type: application/json, not %s", shown)
	}
	return nil
}

// checkJSONText walks a JSON document and refuses, naming the field, what
// encoding/json would accept silently: a repeated key (the last would win),
// an unpaired surrogate escape (it would become U+FFFD), a NUL, and a
// string over domain.MaxTextLength. Syntax errors are left to the decoder.
func checkJSONText(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		next   string // the key whose value comes next (objects)
		index  int    // the next element's index (arrays)
		path   string
	}
	var stack []*frame
	var fields []domain.FieldError
	bad := func(field, reason string) {
		if field == "" {
			field = "body"
		}
		fields = append(fields, domain.FieldError{Field: field, Reason: reason})
	}
	// where names the value about to be read.
	where := func() string {
		if len(stack) == 0 {
			return ""
		}
		f := stack[len(stack)-1]
		var name string
		if f.object {
			name = f.next
		} else {
			name = "[" + strconv.Itoa(f.index) + "]"
		}
		switch {
		case f.path == "":
			return name
		case f.object:
			return f.path + "." + name
		default:
			return f.path + name
		}
	}
	// expectKey reports whether the next string token is an object's key.
	expectKey := func() bool {
		return len(stack) > 0 && stack[len(stack)-1].object && stack[len(stack)-1].next == ""
	}
	afterValue := func() {
		if len(stack) == 0 {
			return
		}
		f := stack[len(stack)-1]
		if f.object {
			f.next = ""
		} else {
			f.index++
		}
	}
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			break // io.EOF or a syntax error the decoder reports later
		}
		end := dec.InputOffset()
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				stack = append(stack, &frame{object: t == '{', keys: map[string]bool{}, path: where()})
			case '}', ']':
				stack = stack[:len(stack)-1]
				afterValue()
			}
		case string:
			key := expectKey()
			field := where()
			if key {
				field = t
				if p := stack[len(stack)-1].path; p != "" {
					field = p + "." + t
				}
			}
			if why := rawStringProblem(b[start:end]); why != "" {
				bad(clip(field), why)
			} else if why := domain.CheckText(t); why != "" {
				bad(clip(field), why)
			} else if len(t) > domain.MaxTextLength {
				bad(clip(field), fmt.Sprintf("must be at most %d bytes", domain.MaxTextLength))
			}
			if key {
				f := stack[len(stack)-1]
				if f.keys[t] {
					bad(clip(field), "is repeated; each key may appear once")
				}
				f.keys[t] = true
				f.next = t
				if t == "" {
					f.next = `""`
				}
				continue
			}
			afterValue()
		default:
			afterValue()
		}
		if len(fields) > 16 {
			break
		}
	}
	if len(fields) > 0 {
		return &domain.Error{Code: domain.CodeParamError, Message: "the JSON body holds text contractd cannot take: " + fields[0].Field + " " + fields[0].Reason, Fields: fields}
	}
	return nil
}

// rawStringProblem scans the raw bytes of one JSON string token (with the
// delimiters around it) for an unpaired UTF-16 surrogate escape.
func rawStringProblem(raw []byte) string {
	i := bytes.IndexByte(raw, '"')
	if i < 0 {
		return ""
	}
	pendingHigh := false
	for i++; i < len(raw); i++ {
		ch := raw[i]
		if ch == '"' {
			break
		}
		if ch != '\\' {
			if pendingHigh {
				return "holds an unpaired surrogate escape"
			}
			continue
		}
		if i+1 >= len(raw) {
			break
		}
		if raw[i+1] != 'u' || i+6 > len(raw) {
			if pendingHigh {
				return "holds an unpaired surrogate escape"
			}
			i++
			continue
		}
		n, err := strconv.ParseUint(string(raw[i+2:i+6]), 16, 16)
		if err != nil {
			return ""
		}
		switch {
		case n >= 0xD800 && n <= 0xDBFF:
			if pendingHigh {
				return "holds an unpaired surrogate escape"
			}
			pendingHigh = true
		case n >= 0xDC00 && n <= 0xDFFF:
			if !pendingHigh {
				return "holds an unpaired surrogate escape"
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return "holds an unpaired surrogate escape"
			}
		}
		i += 5
	}
	if pendingHigh {
		return "holds an unpaired surrogate escape"
	}
	return ""
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
