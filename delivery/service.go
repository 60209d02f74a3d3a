// Package delivery pushes contractd's event feed to the merchant's webhook
// endpoints (api.md, "Webhooks"): it runs the endpoints' management flows
// (create, update, rotate, replay, test, delete) and the delivery workers
// that send each endpoint its batches in feed order, signed, retried until
// accepted. The domain decides every change to an endpoint
// (domain.Endpoint's methods); the store persists it; this package seals
// secrets, checks where a URL resolves, makes the HTTP calls and keeps the
// leases.
package delivery

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/store"
	"github.com/prometheus/client_golang/prometheus"
)

// KeyVariable is the setting that holds the key webhook secrets are
// sealed under; without it webhooks are off.
const KeyVariable = "CONTRACTD_WEBHOOK_KEY"

// Defaults of the delivery workers' timing (Options).
const (
	// DefaultLeaseTTL is how long a lease on an endpoint lasts on
	// Postgres's clock unless renewed: longer than an attempt
	// (domain.AttemptTimeout) plus the renewal interval, so that a
	// replica whose renewals fail cancels its attempt before another one
	// can take the endpoint over.
	DefaultLeaseTTL = 15 * time.Second
	// DefaultRenewInterval is how often a replica renews its leases.
	DefaultRenewInterval = 2 * time.Second
	// DefaultPollInterval is how often a worker looks for new feed rows
	// and free endpoints (no LISTEN: it does not pass a transaction-mode
	// pooler).
	DefaultPollInterval = 200 * time.Millisecond
	// DefaultPruneInterval is how often attempts past
	// domain.AttemptRetention are pruned.
	DefaultPruneInterval = time.Hour
	// leaseMargin is how long before its lease could lapse an attempt is
	// cancelled.
	leaseMargin = time.Second
)

// Options configure a Service. Only Key and AllowLoopback come from the
// service's settings; the rest have defaults and are there for tests.
type Options struct {
	// Key is the 32-byte key secrets are sealed under
	// (CONTRACTD_WEBHOOK_KEY); nil turns webhooks off: Create and
	// RotateSecret answer INVALID_STATE naming the variable, and Run
	// delivers nothing.
	Key []byte
	// AllowLoopback lets endpoints target loopback and link-local
	// addresses (CONTRACTD_WEBHOOK_ALLOW_LOOPBACK).
	AllowLoopback bool
	// Logger receives the service's log lines (never a secret).
	Logger *slog.Logger
	// Registry, when set, receives the delivery metrics.
	Registry prometheus.Registerer
	// Now is the clock of attempts, back-offs and rotations (time.Now when
	// nil); leases are on Postgres's clock.
	Now func() time.Time
	// LeaseTTL, RenewInterval, PollInterval and PruneInterval default to
	// DefaultLeaseTTL, DefaultRenewInterval, DefaultPollInterval and
	// DefaultPruneInterval.
	LeaseTTL, RenewInterval, PollInterval, PruneInterval time.Duration
	// Transport makes the deliveries' HTTP calls; nil is contractd's own,
	// which checks every address it dials (see newClient). A transport
	// given here does no such check.
	Transport http.RoundTripper
	// Resolver resolves endpoints' hosts when they are created or
	// changed; nil is net.DefaultResolver.
	Resolver *net.Resolver
}

// ReplayTarget is where a replay moves an endpoint's cursor: after a feed
// cursor (After, "" for the beginning, when From is zero), or before the
// first row recorded at or after From.
type ReplayTarget struct {
	After string
	From  time.Time
}

// Flows are the webhook endpoints' management flows, as the API's routes
// (/v1/webhook-endpoints) and the console's pages call them, by operator
// (actor); *Service is the one implementation.
type Flows interface {
	Create(ctx context.Context, actor string, in domain.EndpointInput) (Created, error)
	List(ctx context.Context) ([]domain.Endpoint, error)
	Get(ctx context.Context, id string) (domain.Endpoint, error)
	Update(ctx context.Context, actor, id string, p domain.EndpointPatch) (domain.Endpoint, error)
	RotateSecret(ctx context.Context, actor, id string) (Created, error)
	Replay(ctx context.Context, actor, id string, t ReplayTarget) (domain.Endpoint, error)
	Test(ctx context.Context, actor, id string) (domain.Attempt, error)
	Attempts(ctx context.Context, id, cursor string, limit int) ([]domain.Attempt, string, error)
	Delete(ctx context.Context, actor, id string) error
}

var _ Flows = (*Service)(nil)

// Created is a new endpoint (or one whose secret was rotated) with its
// secret in clear: the only time it is shown.
type Created struct {
	Endpoint domain.Endpoint
	Secret   string
}

// Service runs the webhook flows and delivery workers.
type Service struct {
	st       *store.Store
	opt      Options
	log      *slog.Logger
	sealer   *sealer // nil: webhooks off
	client   *http.Client
	resolver *net.Resolver
	metrics  *metrics
}

// New returns the webhook service over st. A Key that is not 32 bytes is
// an error.
func New(st *store.Store, o Options) (*Service, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.RenewInterval <= 0 {
		o.RenewInterval = DefaultRenewInterval
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.PruneInterval <= 0 {
		o.PruneInterval = DefaultPruneInterval
	}
	s := &Service{st: st, opt: o, log: o.Logger, client: newClient(o.AllowLoopback, o.Transport),
		resolver: o.Resolver, metrics: newMetrics(o.Registry)}
	if s.resolver == nil {
		s.resolver = net.DefaultResolver
	}
	if o.Key != nil {
		var err error
		if s.sealer, err = newSealer(o.Key); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Enabled reports whether webhooks are on (a key is configured).
func (s *Service) Enabled() bool { return s.sealer != nil }

// errOff is the answer to creating or rotating a secret with webhooks off.
func errOff() error {
	return domain.Errorf(domain.CodeInvalidState, "webhooks are off: set %s (32 bytes, base64) to create endpoints and rotate their secrets", KeyVariable)
}

// Create registers an endpoint for actor; it starts at the feed's current
// tail. Field rules are PARAM_ERROR; webhooks off (no key) INVALID_STATE.
func (s *Service) Create(ctx context.Context, actor string, in domain.EndpointInput) (Created, error) {
	if s.sealer == nil {
		return Created{}, errOff()
	}
	if err := domain.CheckEndpointInput(in); err != nil {
		return Created{}, err
	}
	if err := s.checkTarget(ctx, in.URL); err != nil {
		return Created{}, err
	}
	id, secret := newUUID(), newSecret()
	e, err := s.st.CreateEndpoint(ctx, domain.Endpoint{ID: id, URL: in.URL, Description: in.Description,
		CreatedBy: actor, SecretSealed: s.sealer.seal(id, secret)})
	if err != nil {
		return Created{}, err
	}
	s.log.Info("webhook endpoint created", "endpoint", id, "url", in.URL, "actor", actor)
	s.lagOfNew(ctx, &e)
	return Created{Endpoint: e, Secret: secret}, nil
}

// List returns every endpoint with its lag and last attempt.
func (s *Service) List(ctx context.Context) ([]domain.Endpoint, error) {
	return s.st.ListEndpoints(ctx)
}

// Get returns one endpoint; an unknown id is NOT_FOUND.
func (s *Service) Get(ctx context.Context, id string) (domain.Endpoint, error) {
	return s.st.GetEndpoint(ctx, id)
}

// Update applies an operator's patch (url, description, paused).
func (s *Service) Update(ctx context.Context, actor, id string, p domain.EndpointPatch) (domain.Endpoint, error) {
	// Every field's rules first, on a scratch endpoint, then where a new
	// url resolves.
	if err := (&domain.Endpoint{}).Edit(p); err != nil {
		return domain.Endpoint{}, err
	}
	if p.URL != nil {
		if err := s.checkTarget(ctx, *p.URL); err != nil {
			return domain.Endpoint{}, err
		}
	}
	e, err := s.st.UpdateEndpoint(ctx, id, actor, func(e *domain.Endpoint) error { return e.Edit(p) })
	if err != nil {
		return domain.Endpoint{}, err
	}
	s.log.Info("webhook endpoint updated", "endpoint", id, "actor", actor,
		"url_changed", p.URL != nil, "description_changed", p.Description != nil, "paused", p.Paused)
	return e, s.st.EndpointLag(ctx, &e)
}

// RotateSecret gives the endpoint a new secret, answered once; the previous
// one keeps signing beside it for domain.RotationOverlap.
func (s *Service) RotateSecret(ctx context.Context, actor, id string) (Created, error) {
	if s.sealer == nil {
		return Created{}, errOff()
	}
	secret := newSecret()
	sealed := s.sealer.seal(id, secret)
	now := s.opt.Now()
	e, err := s.st.UpdateEndpoint(ctx, id, actor, func(e *domain.Endpoint) error {
		e.Rotate(sealed, now)
		return nil
	})
	if err != nil {
		return Created{}, err
	}
	s.log.Info("webhook endpoint secret rotated", "endpoint", id, "actor", actor)
	s.lagOfNew(ctx, &e)
	return Created{Endpoint: e, Secret: secret}, nil
}

// lagOfNew fills in the lag of an endpoint whose new secret is about to be
// answered. The secret is stored already and shown only in that answer,
// so a failure to read the lag is logged and answered as no lag rather
// than as an error that would lose the secret.
func (s *Service) lagOfNew(ctx context.Context, e *domain.Endpoint) {
	if err := s.st.EndpointLag(ctx, e); err != nil {
		s.log.Warn("webhook endpoint's lag not read; answered as 0", "endpoint", e.ID, "error", err.Error())
		e.LagEvents, e.LagSeconds = 0, 0
	}
}

// Replay moves the endpoint's cursor to t and records the move with actor.
func (s *Service) Replay(ctx context.Context, actor, id string, t ReplayTarget) (domain.Endpoint, error) {
	to := t.After
	if !t.From.IsZero() {
		if _, err := s.st.EndpointState(ctx, id); err != nil {
			return domain.Endpoint{}, err
		}
		var err error
		if to, err = s.st.CursorBefore(ctx, t.From); err != nil {
			return domain.Endpoint{}, err
		}
	}
	e, from, err := s.st.ReplayEndpoint(ctx, id, actor, to)
	if err != nil {
		return domain.Endpoint{}, err
	}
	s.log.Info("webhook endpoint replayed", "endpoint", id, "actor", actor, "from_cursor", from, "to_cursor", to)
	return e, s.st.EndpointLag(ctx, &e)
}

// Test sends one ping batch now and returns its attempt.
func (s *Service) Test(ctx context.Context, actor, id string) (domain.Attempt, error) {
	e, err := s.st.EndpointState(ctx, id)
	if err != nil {
		return domain.Attempt{}, err
	}
	did := newUUID()
	body, err := batchBody(domain.DeliveryPing, e.ID, did, []domain.HistoryEntry{}, e.Cursor)
	if err != nil {
		return domain.Attempt{}, err
	}
	actx, cancel := context.WithTimeout(ctx, domain.AttemptTimeout)
	a := s.attempt(actx, e, domain.DeliveryPing, did, body, 0)
	cancel()
	aid, kept, err := s.st.RecordAttempt(ctx, a)
	if err != nil {
		return domain.Attempt{}, err
	}
	if !kept {
		return domain.Attempt{}, domain.Errorf(domain.CodeResourceNotFound, "no webhook endpoint %q", id)
	}
	a.ID = aid
	s.log.Info("webhook test delivery", "endpoint", id, "actor", actor, "delivery", did, "status", a.Status, "error", a.Error)
	return a, nil
}

// Attempts pages the endpoint's attempts, newest first: up to limit after
// the opaque cursor, and the cursor of the next page ("" on the last).
func (s *Service) Attempts(ctx context.Context, id, cursor string, limit int) ([]domain.Attempt, string, error) {
	return s.st.Attempts(ctx, id, cursor, limit)
}

// Delete stops delivering to the endpoint and forgets it and its attempts.
func (s *Service) Delete(ctx context.Context, actor, id string) error {
	if err := s.st.DeleteEndpoint(ctx, id); err != nil {
		return err
	}
	s.log.Info("webhook endpoint deleted", "endpoint", id, "actor", actor)
	return nil
}
