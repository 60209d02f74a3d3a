package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/domain"
	"github.com/labstack/echo/v5"
)

// statusOf maps each domain error code to its HTTP status: the one place
// where that mapping lives.
var statusOf = map[domain.Code]int{
	domain.CodeParamError:       http.StatusBadRequest,
	domain.CodeUnknownEventType: http.StatusBadRequest,
	domain.CodeUnauthorized:     http.StatusUnauthorized,
	domain.CodeSignError:        http.StatusUnauthorized,
	domain.CodeForbidden:        http.StatusForbidden,
	domain.CodeNotFound:         http.StatusNotFound,
	// No webhook endpoint (or other resource) with the id asked for; the
	// router's own "no such route" (codeRouteNotFound) is the same code.
	domain.CodeResourceNotFound: http.StatusNotFound,
	domain.CodeExists:           http.StatusConflict,
	domain.CodeInvalidState:     http.StatusConflict,
	domain.CodeInProgress:       http.StatusConflict,
	domain.CodePayloadTooLarge:  http.StatusRequestEntityTooLarge,
	domain.CodeTooManyRequests:  http.StatusTooManyRequests,
	domain.CodeUpstream:         http.StatusBadGateway,
	domain.CodeUnavailable:      http.StatusServiceUnavailable,
	domain.CodeInternal:         http.StatusInternalServerError,

	codeMethodNotAllowed:     http.StatusMethodNotAllowed,
	codeUnsupportedMediaType: http.StatusUnsupportedMediaType,
}

// The transport's own codes: answers about routes and media types, which
// no domain rule decides (api.md lists them with the domain's).
const (
	// codeRouteNotFound: no route has this path. It is the code of an
	// unknown resource too (api.md: 404 NOT_FOUND), mapped once as
	// domain.CodeResourceNotFound.
	codeRouteNotFound = domain.CodeResourceNotFound
	// codeMethodNotAllowed: a known path asked with another method.
	codeMethodNotAllowed domain.Code = "METHOD_NOT_ALLOWED"
	// codeUnsupportedMediaType: a JSON route called without
	// Content-Type: application/json.
	codeUnsupportedMediaType domain.Code = "UNSUPPORTED_MEDIA_TYPE"
)

// ErrorBody is the JSON every error answers with.
type ErrorBody struct {
	Code    domain.Code    `json:"code"`
	Message string         `json:"message"`
	Detail  map[string]any `json:"detail,omitempty"`
}

// toErrorBody turns any error into its status and body. Domain errors keep
// their code; echo's own routing errors become their nearest code; anything
// else is an internal error whose cause is logged, not shown.
func toErrorBody(err error) (int, ErrorBody) {
	var de *domain.Error
	if errors.As(err, &de) {
		body := ErrorBody{Code: de.Code, Message: de.Message}
		if len(de.Fields) > 0 || len(de.Detail) > 0 {
			body.Detail = map[string]any{}
			for k, v := range de.Detail {
				body.Detail[k] = v
			}
			if len(de.Fields) > 0 {
				body.Detail["fields"] = de.Fields
			}
		}
		status, ok := statusOf[de.Code]
		if !ok {
			status = http.StatusInternalServerError
		}
		return status, body
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return http.StatusServiceUnavailable, ErrorBody{Code: domain.CodeUnavailable, Message: "the request timed out"}
	}
	var sc echo.HTTPStatusCoder
	if errors.As(err, &sc) {
		switch s := sc.StatusCode(); s {
		case http.StatusNotFound:
			return s, ErrorBody{Code: codeRouteNotFound, Message: "no such route"}
		case http.StatusMethodNotAllowed:
			return s, ErrorBody{Code: codeMethodNotAllowed, Message: "method not allowed on this route"}
		case http.StatusRequestEntityTooLarge:
			return s, ErrorBody{Code: domain.CodePayloadTooLarge, Message: "the body is over the limit"}
		case http.StatusUnsupportedMediaType:
			return s, ErrorBody{Code: codeUnsupportedMediaType, Message: "unsupported Content-Type"}
		}
		if s := sc.StatusCode(); s >= 400 && s < 500 {
			return s, ErrorBody{Code: domain.CodeParamError, Message: http.StatusText(s)}
		}
	}
	return http.StatusInternalServerError, ErrorBody{Code: domain.CodeInternal, Message: "internal error"}
}

// clipLong cuts an error's text for a log line: an error may quote input,
// and one line must stay a sane size.
func clipLong(s string) string {
	const max = 1024
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// errorHandler writes every error a handler returns.
func (s *Server) errorHandler(c *echo.Context, err error) {
	if r, _ := echo.UnwrapResponse(c.Response()); r != nil && r.Committed {
		return
	}
	status, body := toErrorBody(err)
	var de *domain.Error
	if errors.As(err, &de) && de.RetryAfter > 0 {
		c.Response().Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(de.RetryAfter.Seconds()))))
	}
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelError
	}
	s.log.Log(c.Request().Context(), level, "request failed", "method", c.Request().Method, "path", clip(c.Request().URL.Path), "status", status, "code", body.Code, "error", clipLong(err.Error()))
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	if c.Path() == config.NotifyPath && c.Request().Method == http.MethodPost {
		// WeChat reads {"code":"FAIL"} on its route, whoever refused.
		_ = c.JSON(status, map[string]string{"code": "FAIL", "message": string(body.Code) + ": " + body.Message})
		return
	}
	_ = c.JSON(status, body)
}

// StatusOf is the HTTP status an error answers with, by the same mapping
// the API uses, for pages (the operations console) that render errors
// themselves.
func StatusOf(err error) int {
	status, _ := toErrorBody(err)
	return status
}
