package domain

import (
	"math/rand/v2"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Webhook endpoints: the merchant's app servers that contractd pushes the
// feed to (api.md, "Webhooks"). The rules and decisions on an endpoint live
// here; package delivery sends, package store persists.

// CodeResourceNotFound: no webhook endpoint (or other resource that is not a
// contract) has the id asked for.
const CodeResourceNotFound Code = "NOT_FOUND"

// The limits of an endpoint's fields.
const (
	MaxEndpointURLLength         = 2048
	MaxEndpointDescriptionLength = 256
	// MaxBatchEvents is the most events one delivery carries.
	MaxBatchEvents = 100
	// AttemptTimeout is how long a receiver has to answer a delivery with
	// a 2xx before the attempt fails.
	AttemptTimeout = 10 * time.Second
	// FirstRetryDelay and MaxRetryDelay bound the back-off between the
	// attempts of one failed batch: 1 s doubling up to 10 minutes.
	FirstRetryDelay = time.Second
	MaxRetryDelay   = 10 * time.Minute
	// RotationOverlap is how long the previous secret keeps signing beside
	// a rotated one.
	RotationOverlap = 24 * time.Hour
	// AttemptRetention is how long attempts are kept.
	AttemptRetention = 30 * 24 * time.Hour
	// MaxAttemptResponse is how much of a receiver's answer an attempt
	// keeps, in bytes.
	MaxAttemptResponse = 512
)

// Kinds of delivery.
const (
	DeliveryEvents = "events"
	DeliveryPing   = "ping"
)

// Endpoint is one webhook endpoint. The secrets are held sealed (encrypted
// under CONTRACTD_WEBHOOK_KEY by package delivery): the domain never sees
// one in clear. The API's answers are httpapi's own, which never carry
// them.
type Endpoint struct {
	ID          string
	URL         string
	Description string
	Paused      bool
	CreatedAt   time.Time
	UpdatedAt   time.Time
	CreatedBy   string
	// Cursor is the feed position delivered so far ("" for the feed's
	// beginning): the cursor GET /v1/events takes as after.
	Cursor string
	// LagEvents and LagSeconds say how far behind the feed's tail the
	// cursor is: the rows past it, and the age of the oldest of them.
	// They are read with the endpoint, never stored.
	LagEvents  int64
	LagSeconds float64
	// LastAttempt summarises the endpoint's latest attempt, nil before the
	// first.
	LastAttempt *AttemptSummary

	SecretSealed         []byte
	PreviousSecretSealed []byte
	PreviousSecretUntil  *time.Time

	// The batch in flight, saved before its first attempt so that every
	// retry sends the same events: DeliveryID, the range (Cursor,
	// DeliveryThrough], how many events it holds, how many attempts failed,
	// and when the next one is due.
	DeliveryID       string
	DeliveryThrough  string
	DeliveryCount    int
	DeliveryAttempts int
	NextAttemptAt    *time.Time
}

// AttemptSummary is the latest attempt as an endpoint shows it.
type AttemptSummary struct {
	At        time.Time
	Status    int
	Error     string
	LatencyMS int
}

// Attempt is one POST of a delivery to an endpoint, as kept for 30 days.
type Attempt struct {
	ID         int64
	EndpointID string
	DeliveryID string
	Kind       string
	EventCount int
	At         time.Time
	// Status is the receiver's HTTP status, 0 when none came (a refused
	// connection, a timeout).
	Status    int
	LatencyMS int
	Error     string
	// Response is the first MaxAttemptResponse bytes of the answer's body.
	Response string
}

// Accepted reports whether the attempt accepted its batch: a 2xx.
func (a Attempt) Accepted() bool { return a.Status >= 200 && a.Status < 300 }

// EndpointInput is what creating an endpoint takes.
type EndpointInput struct {
	URL         string `json:"url"`
	Description string `json:"description"`
}

// EndpointPatch is what updating an endpoint changes: each field that is
// not nil.
type EndpointPatch struct {
	URL         *string `json:"url"`
	Description *string `json:"description"`
	Paused      *bool   `json:"paused"`
}

// CheckEndpointURL checks the rules of an endpoint's url that need no
// network: absolute http or https with a host, at most
// MaxEndpointURLLength characters, valid text, no credentials, no
// fragment. Where its host resolves to is checked by package delivery. It
// returns the parsed URL or a PARAM_ERROR naming field "url".
func CheckEndpointURL(raw string) (*url.URL, error) {
	reason := func() string {
		if r := CheckText(raw); r != "" {
			return r
		}
		if utf8.RuneCountInString(raw) > MaxEndpointURLLength {
			return "must be at most 2048 characters"
		}
		if strings.TrimSpace(raw) != raw || strings.ContainsAny(raw, " \t\r\n") {
			return "must not contain spaces"
		}
		return ""
	}()
	var u *url.URL
	if reason == "" {
		var err error
		u, err = url.Parse(raw)
		switch {
		case err != nil:
			reason = "must be an absolute http or https URL"
		case u.Scheme != "http" && u.Scheme != "https":
			reason = "must be an absolute http or https URL"
		case u.Opaque != "" || u.Host == "" || u.Hostname() == "":
			reason = "must be an absolute http or https URL"
		case u.User != nil:
			reason = "must not hold credentials"
		case u.Fragment != "" || strings.Contains(raw, "#"):
			reason = "must not have a fragment"
		}
	}
	if reason != "" {
		return nil, paramError("bad webhook endpoint", []FieldError{{Field: "url", Reason: reason}})
	}
	return u, nil
}

// CheckEndpointDescription says why v cannot be an endpoint's description,
// or "" when it can.
func CheckEndpointDescription(v string) string {
	if r := CheckText(v); r != "" {
		return r
	}
	if utf8.RuneCountInString(v) > MaxEndpointDescriptionLength {
		return "must be at most 256 characters"
	}
	return ""
}

// CheckEndpointInput checks every field of a new endpoint and names each
// rejected one.
func CheckEndpointInput(in EndpointInput) error {
	var fields []FieldError
	if _, err := CheckEndpointURL(in.URL); err != nil {
		fields = append(fields, err.(*Error).Fields...)
	}
	if r := CheckEndpointDescription(in.Description); r != "" {
		fields = append(fields, FieldError{Field: "description", Reason: r})
	}
	if len(fields) > 0 {
		return paramError("bad webhook endpoint", fields)
	}
	return nil
}

// Edit applies an operator's patch, after checking every field it sets.
func (e *Endpoint) Edit(p EndpointPatch) error {
	var fields []FieldError
	if p.URL != nil {
		if _, err := CheckEndpointURL(*p.URL); err != nil {
			fields = append(fields, err.(*Error).Fields...)
		}
	}
	if p.Description != nil {
		if r := CheckEndpointDescription(*p.Description); r != "" {
			fields = append(fields, FieldError{Field: "description", Reason: r})
		}
	}
	if len(fields) > 0 {
		return paramError("bad webhook endpoint", fields)
	}
	if p.URL != nil {
		e.URL = *p.URL
	}
	if p.Description != nil {
		e.Description = *p.Description
	}
	if p.Paused != nil {
		e.Paused = *p.Paused
	}
	return nil
}

// Rotate replaces the endpoint's secret with sealed; the current one keeps
// signing beside it until now+RotationOverlap.
func (e *Endpoint) Rotate(sealed []byte, now time.Time) {
	until := now.Add(RotationOverlap)
	e.PreviousSecretSealed, e.PreviousSecretUntil = e.SecretSealed, &until
	e.SecretSealed = sealed
}

// Signing returns the sealed secrets that sign a delivery attempted at
// now: the current one, and the previous one while its overlap lasts.
func (e *Endpoint) Signing(now time.Time) [][]byte {
	out := [][]byte{e.SecretSealed}
	if len(e.PreviousSecretSealed) > 0 && e.PreviousSecretUntil != nil && now.Before(*e.PreviousSecretUntil) {
		out = append(out, e.PreviousSecretSealed)
	}
	return out
}

// InFlight reports whether a batch has been planned and not yet accepted.
func (e *Endpoint) InFlight() bool { return e.DeliveryID != "" }

// Plan saves the next batch before its first attempt: deliveryID and the
// range (Cursor, through] holding count events. It refuses when a batch
// is already in flight: that one must be sent until accepted.
func (e *Endpoint) Plan(deliveryID, through string, count int) error {
	if e.InFlight() {
		return Errorf(CodeInvalidState, "endpoint %s has delivery %s in flight", e.ID, e.DeliveryID)
	}
	e.DeliveryID, e.DeliveryThrough, e.DeliveryCount = deliveryID, through, count
	e.DeliveryAttempts, e.NextAttemptAt = 0, nil
	return nil
}

// Accept moves the cursor past the batch deliveryID after a 2xx. It
// refuses when that batch is no longer the one in flight (a replay moved
// the cursor meanwhile): the answer is discarded.
func (e *Endpoint) Accept(deliveryID string) error {
	if !e.InFlight() || e.DeliveryID != deliveryID {
		return Errorf(CodeInvalidState, "delivery %s is no longer in flight on endpoint %s", deliveryID, e.ID)
	}
	e.Cursor = e.DeliveryThrough
	e.DeliveryID, e.DeliveryThrough, e.DeliveryCount = "", "", 0
	e.DeliveryAttempts, e.NextAttemptAt = 0, nil
	return nil
}

// Fail records that an attempt of the batch deliveryID failed at now and
// schedules the next one after RetryDelay. It refuses like Accept.
func (e *Endpoint) Fail(deliveryID string, now time.Time, jitter *rand.Rand) error {
	if !e.InFlight() || e.DeliveryID != deliveryID {
		return Errorf(CodeInvalidState, "delivery %s is no longer in flight on endpoint %s", deliveryID, e.ID)
	}
	e.DeliveryAttempts++
	next := now.Add(RetryDelay(e.DeliveryAttempts, jitter))
	e.NextAttemptAt = &next
	return nil
}

// Due reports whether the batch in flight may be attempted at now.
func (e *Endpoint) Due(now time.Time) bool {
	return e.NextAttemptAt == nil || !now.Before(*e.NextAttemptAt)
}

// Replay moves the cursor to to, back to resend or forward to skip, and
// drops the batch in flight (its range no longer follows the cursor). It
// returns where the cursor was.
func (e *Endpoint) Replay(to string) (from string) {
	from = e.Cursor
	e.Cursor = to
	e.DeliveryID, e.DeliveryThrough, e.DeliveryCount = "", "", 0
	e.DeliveryAttempts, e.NextAttemptAt = 0, nil
	return from
}

// RetryDelay is the wait after the failed-th failed attempt of a batch:
// FirstRetryDelay doubling up to MaxRetryDelay, with full jitter over its
// upper half (so that endpoints that failed together do not retry
// together). jitter nil means no jitter.
func RetryDelay(failed int, jitter *rand.Rand) time.Duration {
	d := FirstRetryDelay
	for i := 1; i < failed && d < MaxRetryDelay; i++ {
		d *= 2
	}
	d = min(d, MaxRetryDelay)
	if jitter != nil {
		d = d/2 + time.Duration(jitter.Int64N(int64(d/2)+1))
	}
	return d
}
