package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/lifecycle"
	"github.com/contractd/contractd/logging"
	"github.com/labstack/echo/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
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
		{domain.CodeInProgress, 409}, {codeRouteNotFound, 404}, {codeMethodNotAllowed, 405},
		{codeUnsupportedMediaType, 415}, {domain.CodeTooManyRequests, 429},
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

func TestRetryAfterIsWholeSecondsRoundedUp(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"in progress, 1.2s of lease left", domain.InProgress("a pre-sign", domain.Key{OutContractCode: "c"}, 1200*time.Millisecond), "2"},
		{"in progress, lease just lapsed", domain.InProgress("a terminate", domain.Key{OutContractCode: "c"}, 0), "1"},
		{"unavailable with a hint", &domain.Error{Code: domain.CodeUnavailable, Message: "x", RetryAfter: 5 * time.Second}, "5"},
		{"no hint", domain.Errorf(domain.CodeInvalidState, "x"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Deps{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			s.echo.GET("/fail", func(*echo.Context) error { return tc.err })
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/fail", nil))
			if got := rec.Header().Get("Retry-After"); got != tc.want {
				t.Fatalf("Retry-After %q, want %q (status %d, body %s)", got, tc.want, rec.Code, rec.Body)
			}
		})
	}
}

func TestAPanicIsA500WithItsStackLoggedAndCounted(t *testing.T) {
	var buf bytes.Buffer
	panics := lifecycle.NewPanicCounter()
	s := New(Deps{Logger: logging.New(&buf, "info"), Panics: panics})
	s.echo.GET("/boom", func(*echo.Context) error {
		var c *domain.Contract
		return errors.New(c.OutContractCode) // a nil dereference, like the one issue 8 found
	})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/boom", nil))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), `"code":"INTERNAL"`) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if got := testutil.ToFloat64(panics.WithLabelValues("http")); got != 1 {
		t.Fatalf("contractd_panics_total{where=http} = %v, want 1", got)
	}
	var logged struct {
		Msg   string `json:"msg"`
		Stack string `json:"stack"`
	}
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "panic recovered") {
			if err := json.Unmarshal([]byte(l), &logged); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !strings.Contains(logged.Stack, "goroutine") || !strings.Contains(logged.Stack, "errors_test.go") {
		t.Fatalf("panic logged without its stack: %q", buf.String())
	}
}

func TestALongRefusedPathIsLoggedCut(t *testing.T) {
	var buf bytes.Buffer
	s := New(Deps{Logger: logging.New(&buf, "info")})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/"+strings.Repeat("a", 100<<10), nil))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"field":"path"`) {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if rec.Body.Len() > 2048 {
		t.Errorf("the answer echoes the path: %d bytes", rec.Body.Len())
	}
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if len(l) > 2048 {
			t.Errorf("a %d-byte log line: %.200s", len(l), l)
		}
	}
}

func TestAnErrorSaysItsCauseOnce(t *testing.T) {
	cause := errors.New("wechatpay: missing Wechatpay-* headers: Wechatpay-Nonce")
	err := &domain.Error{Code: domain.CodeSignError, Message: cause.Error(), Err: cause}
	if n := strings.Count(err.Error(), "missing Wechatpay-* headers"); n != 1 {
		t.Fatalf("%q says it %d times", err.Error(), n)
	}
	wrapped := &domain.Error{Code: domain.CodeUnavailable, Message: "database unreachable", Err: cause}
	if !strings.Contains(wrapped.Error(), "database unreachable: wechatpay") {
		t.Fatalf("%q lost its cause", wrapped.Error())
	}
}
