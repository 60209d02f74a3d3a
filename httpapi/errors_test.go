package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/logging"
)

func TestEveryDomainCodeHasOneStatus(t *testing.T) {
	cases := []struct {
		code   domain.Code
		status int
	}{
		{domain.CodeParamError, 400}, {domain.CodeUnauthorized, 401}, {domain.CodeSignError, 401},
		{domain.CodeForbidden, 403}, {domain.CodeNotFound, 404}, {domain.CodeExists, 409},
		{domain.CodeInvalidState, 409}, {domain.CodePayloadTooLarge, 413}, {domain.CodeUpstream, 502},
		{domain.CodeUnavailable, 503}, {domain.CodeUnknownEventType, 400}, {domain.CodeInternal, 500},
	}
	for _, tc := range cases {
		err := fmt.Errorf("wrapped: %w", domain.Errorf(tc.code, "x"))
		status, body := toErrorBody(err)
		if status != tc.status || body.Code != tc.code {
			t.Errorf("%s: got %d %s, want %d", tc.code, status, body.Code, tc.status)
		}
	}
	if len(statusOf) != len(cases) {
		t.Errorf("statusOf has %d codes, the test %d", len(statusOf), len(cases))
	}
}

func TestErrorBodyCarriesFieldsAndHidesInternals(t *testing.T) {
	_, body := toErrorBody(&domain.Error{Code: domain.CodeParamError, Message: "bad",
		Fields: []domain.FieldError{{Field: "plan_id", Reason: "is required"}}})
	fields, ok := body.Detail["fields"].([]domain.FieldError)
	if !ok || len(fields) != 1 || fields[0].Field != "plan_id" {
		t.Fatalf("detail %+v", body.Detail)
	}
	status, body := toErrorBody(errors.New("pq: password=secret leaked"))
	if status != http.StatusInternalServerError || body.Message != "internal error" || body.Detail != nil {
		t.Fatalf("internal error shown: %d %+v", status, body)
	}
}

func TestOpenAPIIsServed(t *testing.T) {
	s := New(Deps{})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.yaml", nil))
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Body.String(), "openapi: 3.0.3") {
		t.Fatalf("%d %.40q", rec.Code, rec.Body.String())
	}
	if rec.Header().Get("X-Request-Id") == "" {
		t.Fatal("no request id")
	}
}

func TestEveryLogLineOfARequestCarriesItsID(t *testing.T) {
	var buf bytes.Buffer
	s := New(Deps{Logger: logging.New(&buf, "info")})
	req := httptest.NewRequest(http.MethodGet, "/no/such/route", nil)
	req.Header.Set("X-Request-Id", "caller-chosen-id")
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusNotFound || rec.Header().Get("X-Request-Id") != "caller-chosen-id" {
		t.Fatalf("%d %q", rec.Code, rec.Header().Get("X-Request-Id"))
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("want an error line and a request line, got %q", buf.String())
	}
	for _, l := range lines {
		if !strings.Contains(l, `"request_id":"caller-chosen-id"`) {
			t.Errorf("log line without the request id: %s", l)
		}
	}
}
