package httpapi

import (
	"net/http"
	"time"

	"github.com/contractd/contractd/delivery"
	"github.com/contractd/contractd/domain"
	"github.com/labstack/echo/v5"
)

// defaultAttemptsLimit is how many attempts a page holds without ?limit=.
const defaultAttemptsLimit = 50

func (a *API) registerWebhooks(s *Server, ops echo.MiddlewareFunc) {
	s.echo.POST("/v1/webhook-endpoints", a.createEndpoint, ops)
	s.echo.GET("/v1/webhook-endpoints", a.listEndpoints, ops)
	s.echo.GET("/v1/webhook-endpoints/:id", a.getEndpoint, ops)
	s.echo.PATCH("/v1/webhook-endpoints/:id", a.updateEndpoint, ops)
	s.echo.DELETE("/v1/webhook-endpoints/:id", a.deleteEndpoint, ops)
	s.echo.POST("/v1/webhook-endpoints/:id/rotate-secret", a.rotateSecret, ops)
	s.echo.POST("/v1/webhook-endpoints/:id/replay", a.replay, ops)
	s.echo.POST("/v1/webhook-endpoints/:id/test", a.testEndpoint, ops)
	s.echo.GET("/v1/webhook-endpoints/:id/attempts", a.attempts, ops)
}

// webhooks returns the service, or INVALID_STATE when the server was built
// without one (the binary always passes one; its flows answer the same
// when CONTRACTD_WEBHOOK_KEY is not set).
func (a *API) webhooks() (delivery.Flows, error) {
	if a.Webhooks == nil {
		return nil, domain.Errorf(domain.CodeInvalidState, "webhooks are off: CONTRACTD_WEBHOOK_KEY is not set")
	}
	return a.Webhooks, nil
}

// endpointJSON is an endpoint as the API answers it: never its secrets,
// times in UTC.
type endpointJSON struct {
	ID          string       `json:"id"`
	URL         string       `json:"url"`
	Description string       `json:"description"`
	Paused      bool         `json:"paused"`
	CreatedAt   time.Time    `json:"created_at"`
	UpdatedAt   time.Time    `json:"updated_at"`
	Cursor      string       `json:"cursor"`
	LagEvents   int64        `json:"lag_events"`
	LagSeconds  float64      `json:"lag_seconds"`
	LastAttempt *lastAttempt `json:"last_attempt"`
}

// lastAttempt is an endpoint's latest attempt.
type lastAttempt struct {
	At        time.Time `json:"at"`
	Status    int       `json:"status"`
	Error     string    `json:"error"`
	LatencyMS int       `json:"latency_ms"`
}

// endpointCreated is an endpoint with its secret in clear: the answers of
// creation and rotation, the only ones that show it.
type endpointCreated struct {
	endpointJSON
	Secret string `json:"secret"`
}

// attemptJSON is one attempt of a delivery.
type attemptJSON struct {
	DeliveryID string    `json:"delivery_id"`
	Kind       string    `json:"kind"`
	EventCount int       `json:"event_count"`
	At         time.Time `json:"at"`
	Status     int       `json:"status"`
	LatencyMS  int       `json:"latency_ms"`
	Error      string    `json:"error"`
	Response   string    `json:"response"`
}

func toEndpointJSON(e domain.Endpoint) endpointJSON {
	out := endpointJSON{
		ID: e.ID, URL: e.URL, Description: e.Description, Paused: e.Paused,
		CreatedAt: e.CreatedAt.UTC(), UpdatedAt: e.UpdatedAt.UTC(),
		Cursor: e.Cursor, LagEvents: e.LagEvents, LagSeconds: e.LagSeconds,
	}
	if l := e.LastAttempt; l != nil {
		out.LastAttempt = &lastAttempt{At: l.At.UTC(), Status: l.Status, Error: l.Error, LatencyMS: l.LatencyMS}
	}
	return out
}

func toEndpointCreated(c delivery.Created) endpointCreated {
	return endpointCreated{endpointJSON: toEndpointJSON(c.Endpoint), Secret: c.Secret}
}

func toAttemptJSON(at domain.Attempt) attemptJSON {
	return attemptJSON{DeliveryID: at.DeliveryID, Kind: at.Kind, EventCount: at.EventCount, At: at.At.UTC(),
		Status: at.Status, LatencyMS: at.LatencyMS, Error: at.Error, Response: at.Response}
}

// decodeBody reads a JSON route's body into v the way every JSON route
// does: Content-Type application/json, at most MaxBodyBytes, strict
// decoding.
func decodeBody(c *echo.Context, v any, required string) error {
	if err := requireJSON(c); err != nil {
		return err
	}
	b, err := readBody(c)
	if err != nil {
		return err
	}
	return decodeStrict(b, v, required)
}

func (a *API) createEndpoint(c *echo.Context) error {
	var in domain.EndpointInput
	if err := decodeBody(c, &in, "url"); err != nil {
		return err
	}
	w, err := a.webhooks()
	if err != nil {
		return err
	}
	created, err := w.Create(c.Request().Context(), actorOf(c), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toEndpointCreated(created))
}

func (a *API) listEndpoints(c *echo.Context) error {
	w, err := a.webhooks()
	if err != nil {
		return err
	}
	list, err := w.List(c.Request().Context())
	if err != nil {
		return err
	}
	items := make([]endpointJSON, 0, len(list))
	for _, e := range list {
		items = append(items, toEndpointJSON(e))
	}
	return c.JSON(http.StatusOK, map[string]any{"items": items})
}

func (a *API) getEndpoint(c *echo.Context) error {
	w, err := a.webhooks()
	if err != nil {
		return err
	}
	e, err := w.Get(c.Request().Context(), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toEndpointJSON(e))
}

func (a *API) updateEndpoint(c *echo.Context) error {
	var p domain.EndpointPatch
	if err := decodeBody(c, &p, "url"); err != nil {
		return err
	}
	w, err := a.webhooks()
	if err != nil {
		return err
	}
	e, err := w.Update(c.Request().Context(), actorOf(c), c.Param("id"), p)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toEndpointJSON(e))
}

func (a *API) rotateSecret(c *echo.Context) error {
	w, err := a.webhooks()
	if err != nil {
		return err
	}
	created, err := w.RotateSecret(c.Request().Context(), actorOf(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toEndpointCreated(created))
}

// replayBody is a replay's body: exactly one of after (a feed cursor, ""
// for the feed's beginning) and from (an RFC3339 time).
type replayBody struct {
	After *string `json:"after"`
	From  *string `json:"from"`
}

// target reads the replay's target, naming the field that is wrong.
func (b replayBody) target() (delivery.ReplayTarget, error) {
	bad := func(field, reason string) error {
		return &domain.Error{Code: domain.CodeParamError, Message: "bad replay: " + field + " " + reason,
			Fields: []domain.FieldError{{Field: field, Reason: reason}}}
	}
	switch {
	case b.After != nil && b.From != nil:
		return delivery.ReplayTarget{}, bad("from", "must not be given with after: give exactly one of after and from")
	case b.After != nil:
		return delivery.ReplayTarget{After: *b.After}, nil
	case b.From != nil:
		t, err := time.Parse(time.RFC3339, *b.From)
		if err != nil {
			return delivery.ReplayTarget{}, bad("from", "must be an RFC3339 time")
		}
		return delivery.ReplayTarget{From: t}, nil
	}
	return delivery.ReplayTarget{}, bad("after", "is required (or from): give exactly one of after and from")
}

func (a *API) replay(c *echo.Context) error {
	var body replayBody
	if err := decodeBody(c, &body, "after"); err != nil {
		return err
	}
	target, err := body.target()
	if err != nil {
		return err
	}
	w, err := a.webhooks()
	if err != nil {
		return err
	}
	e, err := w.Replay(c.Request().Context(), actorOf(c), c.Param("id"), target)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toEndpointJSON(e))
}

func (a *API) testEndpoint(c *echo.Context) error {
	w, err := a.webhooks()
	if err != nil {
		return err
	}
	at, err := w.Test(c.Request().Context(), actorOf(c), c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toAttemptJSON(at))
}

func (a *API) attempts(c *echo.Context) error {
	limit, err := queryLimit(c, defaultAttemptsLimit)
	if err != nil {
		return err
	}
	w, err := a.webhooks()
	if err != nil {
		return err
	}
	list, next, err := w.Attempts(c.Request().Context(), c.Param("id"), c.QueryParam("cursor"), limit)
	if err != nil {
		return err
	}
	items := make([]attemptJSON, 0, len(list))
	for _, at := range list {
		items = append(items, toAttemptJSON(at))
	}
	return c.JSON(http.StatusOK, map[string]any{"items": items, "next_cursor": next})
}

func (a *API) deleteEndpoint(c *echo.Context) error {
	w, err := a.webhooks()
	if err != nil {
		return err
	}
	if err := w.Delete(c.Request().Context(), actorOf(c), c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
