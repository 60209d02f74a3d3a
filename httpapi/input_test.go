package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/contractd/contractd/domain"
	"github.com/labstack/echo/v5"
)

// fieldsOf returns a PARAM_ERROR's fields, failing the test for any other
// error.
func fieldsOf(t *testing.T, err error) []domain.FieldError {
	t.Helper()
	var de *domain.Error
	if !errors.As(err, &de) || de.Code != domain.CodeParamError {
		t.Fatalf("error %v, want a PARAM_ERROR", err)
	}
	return de.Fields
}

func TestCheckRequestText(t *testing.T) {
	long := strings.Repeat("a", maxQueryValueBytes+1)
	for _, tc := range []struct {
		name   string
		target string
		header http.Header
		fields []string // the fields named, in order; none for a request that passes
	}{
		{name: "a plain request passes", target: "/v1/contracts/c-1?state=signed&limit=5",
			header: http.Header{"Authorization": {"Bearer t"}}},
		{name: "a NUL in the path", target: "/v1/contracts/a%00b", fields: []string{"path"}},
		{name: "a path over its bound", target: "/" + strings.Repeat("p", maxPathBytes), fields: []string{"path"}},
		{name: "a malformed query", target: "/v1/contracts?state=%zz", fields: []string{"query"}},
		{name: "a NUL in a query value names the parameter", target: "/v1/contracts?state=a%00", fields: []string{"state"}},
		{name: "a query value over its bound names the parameter", target: "/v1/contracts?cursor=" + long, fields: []string{"cursor"}},
		{name: "a NUL in a parameter name", target: "/v1/contracts?a%00=1", fields: []string{"query"}},
		{name: "a parameter name over its bound", target: "/v1/contracts?" + long + "=1", fields: []string{"query"}},
		{name: "invalid UTF-8 in a header names the header", target: "/v1/contracts",
			header: http.Header{"X-Note": {"caf\xe9"}}, fields: []string{"header X-Note"}},
		{name: "a header value over its bound", target: "/v1/contracts",
			header: http.Header{"X-Long": {strings.Repeat("h", domain.MaxTextLength+1)}}, fields: []string{"header X-Long"}},
		{name: "every problem is named, parameters and headers in name order",
			target: "/v1/contracts?b=%00&a=%00", header: http.Header{"X-B": {"\x00"}, "X-A": {"\x00"}},
			fields: []string{"a", "b", "header X-A", "header X-B"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "http://contractd.test/", nil)
			u, err := req.URL.Parse(tc.target)
			if err != nil && len(tc.fields) == 0 {
				t.Fatal(err)
			}
			if err == nil {
				req.URL = u
			} else {
				// url.Parse refuses what a raw request line may still carry.
				path, query, _ := strings.Cut(tc.target, "?")
				req.URL.Path, req.URL.RawQuery = path, query
			}
			for k, vs := range tc.header {
				req.Header[k] = vs
			}
			c := echo.New().NewContext(req, httptest.NewRecorder())
			err = checkRequestText(c)
			if len(tc.fields) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var got []string
			for _, f := range fieldsOf(t, err) {
				got = append(got, f.Field)
				if f.Reason == "" {
					t.Errorf("field %s without a reason", f.Field)
				}
			}
			if !reflect.DeepEqual(got, tc.fields) {
				t.Fatalf("fields %v, want %v (%v)", got, tc.fields, err)
			}
			if !strings.Contains(err.Error(), tc.fields[0]) {
				t.Errorf("message %q does not name %s", err.Error(), tc.fields[0])
			}
		})
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want string
	}{
		{"short text is kept", "abc", "abc"},
		{"text at the bound is kept", strings.Repeat("a", maxLoggedBytes), strings.Repeat("a", maxLoggedBytes)},
		{"longer text is cut and marked with its length", strings.Repeat("a", maxLoggedBytes+10),
			strings.Repeat("a", maxLoggedBytes) + "…(138 bytes)"},
		// 127 ASCII bytes then a 3-byte character across the bound: the cut
		// falls before the character, never inside it.
		{"a cut never splits a character", strings.Repeat("a", maxLoggedBytes-1) + "中中",
			strings.Repeat("a", maxLoggedBytes-1) + "…(133 bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := clip(tc.in)
			if got != tc.want {
				t.Fatalf("clip = %q, want %q", got, tc.want)
			}
			if !utf8.ValidString(got) {
				t.Fatalf("clip = %q is not valid UTF-8", got)
			}
		})
	}
}

func TestRequireJSON(t *testing.T) {
	for _, tc := range []struct {
		contentType string
		ok          bool
		shown       string // what the refusal quotes
	}{
		{"application/json", true, ""},
		{"application/json; charset=utf-8", true, ""},
		{"application/json; charset=UTF-8", true, ""},
		{"Application/JSON", true, ""},
		{"", false, "not none"},
		{"text/plain", false, "not text/plain"},
		{"application/json; charset=latin1", false, "charset=latin1"},
		{"application/json; boundary=x", false, "boundary=x"},
		{"application/jsonx", false, "application/jsonx"},
		{"application/json; charset", false, "charset"},
		{"application/x-www-form-urlencoded", false, "form"},
	} {
		t.Run(tc.contentType, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/v1/contracts/pre-sign", nil)
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			err := requireJSON(echo.New().NewContext(req, httptest.NewRecorder()))
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var de *domain.Error
			if !errors.As(err, &de) || de.Code != codeUnsupportedMediaType {
				t.Fatalf("error %v, want UNSUPPORTED_MEDIA_TYPE", err)
			}
			if !strings.Contains(de.Message, tc.shown) {
				t.Fatalf("message %q does not quote %q", de.Message, tc.shown)
			}
		})
	}
	// A long Content-Type is quoted cut.
	req := httptest.NewRequest(http.MethodPost, "/", nil)
	req.Header.Set("Content-Type", "text/"+strings.Repeat("x", 4000))
	err := requireJSON(echo.New().NewContext(req, httptest.NewRecorder()))
	if err == nil || len(err.Error()) > 400 || !strings.Contains(err.Error(), "(4005 bytes)") {
		t.Fatalf("long Content-Type: %v", err)
	}
}

func TestJSONKindSpeaksJSON(t *testing.T) {
	var p *int64
	for _, tc := range []struct {
		v    any
		want string
	}{
		{"", "a string"}, {true, "true or false"}, {int64(1), "an integer"}, {uint8(1), "an integer"},
		{p, "an integer"}, {1.5, "a number"}, {[]string{}, "an array"}, {[2]int{}, "an array"},
		{map[string]any{}, "an object"}, {struct{}{}, "an object"},
	} {
		if got := jsonKind(reflect.TypeOf(tc.v)); got != tc.want {
			t.Errorf("jsonKind(%T) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

// decodeStrict (with decodeError and checkJSONText) answers every broken
// body with a PARAM_ERROR in the API's words, naming the field where there
// is one.
func TestDecodeStrictSpeaksTheAPIsWords(t *testing.T) {
	type body struct {
		Code   string `json:"out_contract_code"`
		PlanID *int64 `json:"plan_id"`
		Tags   []string
	}
	for _, tc := range []struct {
		name    string
		in      string
		field   string // the field named, "" for none
		message string // a part of the message
	}{
		{"an empty body names the required field", "  ", "out_contract_code", "the body is empty"},
		{"a wrong type names the field and the JSON kind", `{"plan_id":"1"}`, "plan_id", "plan_id must be an integer"},
		{"a string where an integer goes", `{"out_contract_code":1}`, "out_contract_code", "must be a string"},
		{"not an object", `[1]`, "body", "must be a JSON object"},
		{"an unknown field is named", `{"nope":1}`, "nope", "unknown field nope"},
		{"a syntax error gives its offset", `{"plan_id":1,}`, "", "malformed JSON body at byte"},
		{"a body that ends early", `{"plan_id":1`, "", "malformed JSON body"},
		{"data after the object", `{"plan_id":1} {}`, "", "data after the object"},
		{"a NUL in a string", `{"out_contract_code":"a\u0000b"}`, "out_contract_code", "out_contract_code"},
		{"invalid UTF-8 names the field", "{\"out_contract_code\":\"caf\xe9\"}", "out_contract_code", "not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v body
			err := decodeStrict([]byte(tc.in), &v, "out_contract_code")
			fields := fieldsOf(t, err)
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("message %q, want it to contain %q", err.Error(), tc.message)
			}
			if tc.field == "" {
				if len(fields) != 0 {
					t.Errorf("fields %+v, want none", fields)
				}
				return
			}
			if len(fields) == 0 || fields[0].Field != tc.field {
				t.Fatalf("fields %+v, want %s first", fields, tc.field)
			}
			if strings.Contains(err.Error(), "json:") || strings.Contains(err.Error(), "Go value") {
				t.Errorf("message %q speaks Go", err.Error())
			}
		})
	}
	var v body
	if err := decodeStrict([]byte(`{"out_contract_code":"c-1","plan_id":7,"Tags":["a"]}`), &v, "out_contract_code"); err != nil ||
		v.Code != "c-1" || v.PlanID == nil || *v.PlanID != 7 || len(v.Tags) != 1 {
		t.Fatalf("a valid body: %+v %v", v, err)
	}
}
