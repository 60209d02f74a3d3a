package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/contractd/contractd/config"
	"github.com/contractd/contractd/delivery"
	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/lifecycle"
	"github.com/contractd/contractd/logging"
	"github.com/labstack/echo/v5"
)

// API holds the contract routes' dependencies.
type API struct {
	Service *lifecycle.Service
	Tokens  config.Tokens
	// Throttle, when set, counts the wrong bearer tokens of each client
	// address and refuses an address beyond its limit with 429.
	Throttle *Throttle
	// Webhooks runs the webhook endpoints' flows (/v1/webhook-endpoints);
	// without it those routes answer INVALID_STATE.
	Webhooks delivery.Flows
	log      *slog.Logger
	// answerBufs keeps the buffers contracts' JSON is made in.
	answerBufs sync.Pool
}

func (a *API) register(s *Server) {
	a.log = s.log
	app := a.auth(config.ScopeApp, config.ScopeOps)
	ops := a.auth(config.ScopeOps)
	s.echo.POST("/v1/contracts/pre-sign", a.preSign, a.auth(config.ScopeApp))
	s.echo.GET("/v1/contracts/:code", a.getContract, app)
	s.echo.GET("/v1/contracts", a.listContracts, ops)
	s.echo.GET("/v1/contracts/:code/events", a.history, ops)
	s.echo.POST("/v1/contracts/:code/terminate", a.terminate, ops)
	s.echo.POST("/v1/contracts/:code/sync", a.sync, ops)
	s.echo.GET("/v1/events", a.feed, ops)
	s.echo.POST(config.NotifyPath, a.notification)
	a.registerWebhooks(s, ops)
}

// auth admits requests whose bearer token has one of the scopes: 401 for a
// missing or unknown token, 403 for a token without the scope. Each token
// presented is an attempt for the throttle: from a client address beyond
// its limit of wrong tokens the answer is 429, right token or wrong, and
// the token is not let through.
func (a *API) auth(scopes ...config.Scope) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			token, ok := bearerToken(c.Request().Header.Get("Authorization"))
			if !ok {
				return domain.Errorf(domain.CodeUnauthorized, "a bearer token is required")
			}
			holder, known := a.Tokens.Holder(token)
			if a.Throttle != nil {
				if _, err := a.Throttle.Attempt(c.Request().Context(), c.RealIP(), !known); err != nil {
					return err
				}
			}
			if !known {
				return domain.Errorf(domain.CodeUnauthorized, "unknown token")
			}
			for _, s := range scopes {
				if s == holder.Scope {
					if holder.Name != "" {
						// The holder is the actor of what this request does:
						// history details and log lines name them.
						c.SetRequest(c.Request().WithContext(logging.WithActor(c.Request().Context(), holder.Name)))
						c.Set(actorKey, holder.Name)
					}
					return next(c)
				}
			}
			return domain.Errorf(domain.CodeForbidden, "this route needs scope %s", scopes[0])
		}
	}
}

// bearerToken reads the token of an Authorization header of the Bearer
// scheme, whose name is case-insensitive (RFC 7235): "bearer" and "BEARER"
// are as good as "Bearer". It reports false without a token of that scheme.
func bearerToken(h string) (string, bool) {
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimLeft(token, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}

// readBody reads at most MaxBodyBytes of the body, refusing more with
// PAYLOAD_TOO_LARGE. A body declared longer (Content-Length) is refused
// before anything is read, so that a client that sent "Expect:
// 100-continue" gets the 413 instead of "100 Continue" (Go's server sends
// that at the first read). A body that cannot be read is refused saying
// what happened, never with the connection's addresses Go's errors hold.
func readBody(c *echo.Context) ([]byte, error) {
	if c.Request().ContentLength > MaxBodyBytes {
		return nil, domain.Errorf(domain.CodePayloadTooLarge, "the body is over %d bytes", MaxBodyBytes)
	}
	r := http.MaxBytesReader(c.Response(), c.Request().Body, MaxBodyBytes)
	b, err := io.ReadAll(r)
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case err == nil:
		return b, nil
	case errors.As(err, &mbe):
		return nil, domain.Errorf(domain.CodePayloadTooLarge, "the body is over %d bytes", MaxBodyBytes)
	case errors.As(err, &ne) && ne.Timeout():
		return nil, &domain.Error{Code: domain.CodeParamError, Message: "the body did not arrive in time: the connection stalled before all of it was sent", Err: err}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, &domain.Error{Code: domain.CodeParamError, Message: "the body ended before its declared length", Err: err}
	}
	return nil, &domain.Error{Code: domain.CodeParamError, Message: "the body could not be read: the connection failed", Err: err}
}

// decodeStrict decodes one JSON object after checkJSONText, refusing an
// empty body (naming required, the field the route cannot do without),
// unknown fields, trailing data and wrong types with a PARAM_ERROR that
// names the field in the API's words.
func decodeStrict(b []byte, v any, required string) error {
	if !utf8.Valid(b) {
		// encoding/json would silently turn invalid bytes into U+FFFD and
		// send a garbled name to WeChat: refuse, naming the field.
		return invalidUTF8(b)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return &domain.Error{Code: domain.CodeParamError, Message: "the body is empty: a JSON object with " + required + " is required",
			Fields: []domain.FieldError{{Field: required, Reason: "is required"}}}
	}
	if err := checkJSONText(b); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errTrailing
	}
	if err == nil {
		return nil
	}
	return decodeError(err)
}

// invalidUTF8 names the top-level fields of a body whose raw values are not
// valid UTF-8.
func invalidUTF8(b []byte) error {
	de := &domain.Error{Code: domain.CodeParamError, Message: "the body is not valid UTF-8"}
	var raw map[string]json.RawMessage
	if json.Unmarshal(b, &raw) == nil {
		for k, v := range raw {
			if !utf8.Valid(v) {
				de.Fields = append(de.Fields, domain.FieldError{Field: clip(strings.ToValidUTF8(k, "\ufffd")), Reason: "must be valid UTF-8"})
			}
		}
	}
	sort.Slice(de.Fields, func(i, j int) bool { return de.Fields[i].Field < de.Fields[j].Field })
	return de
}

// keyOf reads the contract key of a route: the code in the path and the
// optional sub_mchid query value (domain.ParseKey's rules, the console's
// too).
func keyOf(c *echo.Context) (domain.Key, error) {
	return domain.ParseKey(c.Param("code"), c.QueryParam("sub_mchid"))
}

func (a *API) preSign(c *echo.Context) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	b, err := readBody(c)
	if err != nil {
		return err
	}
	var req domain.PreSignRequest
	if err := decodeStrict(b, &req, "out_contract_code"); err != nil {
		return err
	}
	res, err := a.Service.PreSign(c.Request().Context(), req, actorOf(c))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
	}
	return c.JSON(status, map[string]any{"contract": res.Contract, "launch": res.Launch})
}

func (a *API) getContract(c *echo.Context) error {
	if c.Param("code") == domain.PreSignActionName {
		// The pre-sign route's path, asked with another method.
		c.Response().Header().Set("Allow", http.MethodPost)
		return domain.Errorf(codeMethodNotAllowed, "%s %s is not a route; pre-sign takes POST", c.Request().Method, c.Request().URL.Path)
	}
	key, err := keyOf(c)
	if err != nil {
		return err
	}
	ct, err := a.Service.Get(c.Request().Context(), key)
	if err != nil {
		return err
	}
	return a.writeContract(c, http.StatusOK, ct)
}

func (a *API) listContracts(c *echo.Context) error {
	// The one parser of list filters, shared with the console.
	f, err := domain.ParseListFilter(c.Request().URL.Query())
	if err != nil {
		return err
	}
	items, next, err := a.Service.List(c.Request().Context(), f)
	if err != nil {
		return err
	}
	if items == nil {
		items = []domain.Contract{}
	}
	return c.JSON(http.StatusOK, map[string]any{"items": items, "next_cursor": next})
}

func (a *API) history(c *echo.Context) error {
	key, err := keyOf(c)
	if err != nil {
		return err
	}
	h, err := a.Service.History(c.Request().Context(), key)
	if err != nil {
		return err
	}
	if h == nil {
		h = []domain.HistoryEntry{}
	}
	return c.JSON(http.StatusOK, map[string]any{"items": h})
}

func (a *API) feed(c *echo.Context) error {
	after := c.QueryParam("after")
	limit, err := queryLimit(c, 100)
	if err != nil {
		return err
	}
	page, err := a.Service.Feed(c.Request().Context(), after, limit)
	if err != nil {
		return err
	}
	if page.Items == nil {
		page.Items = []domain.HistoryEntry{}
	}
	// lost is always present: false, or true when a failover lost the
	// row the cursor named (lost_position says which; next_cursor resumes
	// at the last row still held before it).
	out := map[string]any{"items": page.Items, "next_cursor": page.Next, "lost": page.Lost != nil}
	if page.Lost != nil {
		out["lost_position"] = page.Lost
	}
	return c.JSON(http.StatusOK, out)
}

// queryLimit reads the ?limit= of a paged route: def when absent, else a
// whole number from 1 to domain.MaxListLimit (PARAM_ERROR naming limit).
func queryLimit(c *echo.Context, def int) (int, error) {
	v := c.QueryParam("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > domain.MaxListLimit {
		return 0, &domain.Error{Code: domain.CodeParamError, Message: "bad query parameters",
			Fields: []domain.FieldError{{Field: "limit", Reason: "must be between 1 and " + strconv.Itoa(domain.MaxListLimit)}}}
	}
	return n, nil
}

func (a *API) terminate(c *echo.Context) error {
	key, err := keyOf(c)
	if err != nil {
		return err
	}
	if err := requireJSON(c); err != nil {
		return err
	}
	b, err := readBody(c)
	if err != nil {
		return err
	}
	var req struct {
		Note string `json:"note"`
	}
	if err := decodeStrict(b, &req, "note"); err != nil {
		return err
	}
	ct, err := a.Service.Terminate(c.Request().Context(), key, actorOf(c), req.Note)
	if err != nil {
		return err
	}
	return a.writeContract(c, http.StatusOK, ct)
}

func (a *API) sync(c *echo.Context) error {
	key, err := keyOf(c)
	if err != nil {
		return err
	}
	ct, err := a.Service.Sync(c.Request().Context(), key, actorOf(c))
	if err != nil {
		return err
	}
	return a.writeContract(c, http.StatusOK, ct)
}

// notification takes WeChat's posts. It answers 204 on success (duplicates
// included) and {"code":"FAIL","message":...} with a 4xx or 5xx otherwise,
// so that WeChat retries. The body is read once and verified as received.
func (a *API) notification(c *echo.Context) error {
	b, err := readBody(c)
	if err == nil {
		_, err = a.Service.HandleNotification(c.Request().Context(), c.Request().Header, b)
	}
	if err == nil {
		return c.NoContent(http.StatusNoContent)
	}
	status, body := toErrorBody(err)
	a.log.WarnContext(c.Request().Context(), "notification refused", "status", status, "code", body.Code, "error", clipLong(err.Error()))
	return c.JSON(status, map[string]string{"code": "FAIL", "message": string(body.Code) + ": " + body.Message})
}
