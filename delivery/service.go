// Package delivery pushes contractd's event feed to the merchant's webhook
// endpoints (api.md, "Webhooks"): it runs the endpoints' management flows
// (create, update, rotate, replay, test, delete) and the delivery workers
// that send each endpoint its batches in feed order, signed, retried until
// accepted. The domain decides every change to an endpoint (domain.Endpoint's
// methods); the store persists it; this package seals secrets, checks where
// a URL resolves, makes the HTTP calls and keeps the leases.
package delivery

import (
	"context"
	"errors"
	"time"

	"github.com/contractd/contractd/domain"
)

// errTodo marks what is still to be built on this branch.
var errTodo = errors.New("delivery: not built yet")

// ReplayTarget is where a replay moves an endpoint's cursor: after a feed
// cursor (After, "" for the beginning, when From is zero), or before the
// first row recorded at or after From.
type ReplayTarget struct {
	After string
	From  time.Time
}

// Created is a new endpoint (or one whose secret was rotated) with its
// secret in clear: the only time it is shown.
type Created struct {
	Endpoint domain.Endpoint
	Secret   string
}

// Service runs the webhook flows and delivery workers.
type Service struct{}

// Create registers an endpoint for actor; it starts at the feed's current
// tail. Field rules are PARAM_ERROR; webhooks off (no key) INVALID_STATE.
func (s *Service) Create(ctx context.Context, actor string, in domain.EndpointInput) (Created, error) {
	return Created{}, errTodo
}

// List returns every endpoint with its lag and last attempt.
func (s *Service) List(ctx context.Context) ([]domain.Endpoint, error) { return nil, errTodo }

// Get returns one endpoint; an unknown id is NOT_FOUND.
func (s *Service) Get(ctx context.Context, id string) (domain.Endpoint, error) {
	return domain.Endpoint{}, errTodo
}

// Update applies an operator's patch (url, description, paused).
func (s *Service) Update(ctx context.Context, actor, id string, p domain.EndpointPatch) (domain.Endpoint, error) {
	return domain.Endpoint{}, errTodo
}

// RotateSecret gives the endpoint a new secret, answered once; the previous
// one keeps signing beside it for domain.RotationOverlap.
func (s *Service) RotateSecret(ctx context.Context, actor, id string) (Created, error) {
	return Created{}, errTodo
}

// Replay moves the endpoint's cursor to t and records the move with actor.
func (s *Service) Replay(ctx context.Context, actor, id string, t ReplayTarget) (domain.Endpoint, error) {
	return domain.Endpoint{}, errTodo
}

// Test sends one ping batch now and returns its attempt.
func (s *Service) Test(ctx context.Context, actor, id string) (domain.Attempt, error) {
	return domain.Attempt{}, errTodo
}

// Attempts pages the endpoint's attempts, newest first: up to limit after
// the opaque cursor, and the cursor of the next page ("" on the last).
func (s *Service) Attempts(ctx context.Context, id, cursor string, limit int) ([]domain.Attempt, string, error) {
	return nil, "", errTodo
}

// Delete stops delivering to the endpoint and forgets it and its attempts.
func (s *Service) Delete(ctx context.Context, actor, id string) error { return errTodo }

// Run delivers to every endpoint this replica holds the lease of, and
// prunes old attempts, until ctx ends.
func (s *Service) Run(ctx context.Context) {}
