package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/store"
	"github.com/contractd/contractd/webhook"
)

// batch is the body of a delivery: exactly what receivers decode.
type batch struct {
	Type       string                `json:"type"`
	EndpointID string                `json:"endpoint_id"`
	DeliveryID string                `json:"delivery_id"`
	Events     []domain.HistoryEntry `json:"events"`
	NextCursor string                `json:"next_cursor"`
}

// batchBody marshals a delivery's body; events are encoded with
// encoding/json, as GET /v1/events answers them.
func batchBody(kind, endpointID, deliveryID string, events []domain.HistoryEntry, next string) ([]byte, error) {
	b, err := json.Marshal(batch{Type: kind, EndpointID: endpointID, DeliveryID: deliveryID, Events: events, NextCursor: next})
	if err != nil {
		return nil, fmt.Errorf("delivery: marshal batch %s: %w", deliveryID, err)
	}
	return b, nil
}

// attempt POSTs body to e once, signed at this moment with every secret
// that signs now, within ctx, and returns what happened (not yet
// recorded).
func (s *Service) attempt(ctx context.Context, e domain.Endpoint, kind, deliveryID string, body []byte, count int) (a domain.Attempt) {
	now := s.opt.Now()
	a = domain.Attempt{EndpointID: e.ID, DeliveryID: deliveryID, Kind: kind, EventCount: count, At: now.UTC()}
	start := time.Now()
	defer func() {
		a.LatencyMS = int(time.Since(start).Milliseconds())
		outcome := "unanswered"
		switch {
		case a.Accepted():
			outcome = "accepted"
		case a.Status != 0:
			outcome = "refused"
		}
		s.metrics.attempts.WithLabelValues(kind, outcome).Inc()
		s.metrics.latency.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	}()
	if s.sealer == nil {
		a.Error = "webhooks are off: " + KeyVariable + " is not set"
		return a
	}
	var secrets []string
	for _, sealed := range e.Signing(now) {
		secret, err := s.sealer.open(e.ID, sealed)
		if err != nil {
			a.Error = err.Error()
			return a
		}
		secrets = append(secrets, secret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.URL, bytes.NewReader(body))
	if err != nil {
		a.Error = "bad url: " + err.Error()
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "contractd-webhooks")
	req.Header.Set(webhook.SignatureHeader, webhook.Sign(now, body, secrets...))
	req.Header.Set(webhook.DeliveryHeader, deliveryID)
	resp, err := s.client.Do(req)
	if err != nil {
		a.Error = describe(ctx, err)
		return a
	}
	defer resp.Body.Close()
	a.Status = resp.StatusCode
	head, _ := io.ReadAll(io.LimitReader(resp.Body, domain.MaxAttemptResponse))
	a.Response = string(bytes.ToValidUTF8(bytes.ReplaceAll(head, []byte{0}, nil), []byte("\uFFFD")))
	// Drain a little more so that the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if !a.Accepted() {
		a.Error = "answered " + strconv.Itoa(resp.StatusCode)
		if t := http.StatusText(resp.StatusCode); t != "" {
			a.Error += " " + t
		}
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			a.Error += " (redirects are not followed)"
		}
	}
	return a
}

// describe says why an attempt got no answer.
func describe(ctx context.Context, err error) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "no answer within " + domain.AttemptTimeout.String()
	}
	refused := errors.Is(err, errRefusedTarget)
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if refused {
		return "refused: " + err.Error()
	}
	return err.Error()
}

// Run delivers to every endpoint this replica holds the lease of, and
// prunes old attempts, until ctx ends; it then releases its leases.
//
// Every poll interval it takes the lease of free endpoints (not paused,
// lease free or expired on Postgres's clock), and every renewal interval it
// renews those it holds; each held endpoint has one worker (deliver). A
// lease that renewal no longer returns (expired, taken over, endpoint
// paused or deleted) stops its worker, cancelling its attempt in flight.
func (s *Service) Run(ctx context.Context) {
	if s.sealer == nil {
		s.log.Info("webhooks are off (" + KeyVariable + " is not set): no deliveries")
		<-ctx.Done()
		return
	}
	token := newUUID()
	s.log.Info("webhook delivery started", "lease_token", token, "lease_ttl", s.opt.LeaseTTL.String())
	r := &runner{s: s, token: token, workers: map[string]*worker{}}
	pruneDone := make(chan struct{})
	go func() { defer close(pruneDone); s.prune(ctx) }()
	tick := time.NewTicker(s.opt.PollInterval)
	defer tick.Stop()
	var renewed time.Time
	for {
		if time.Since(renewed) >= s.opt.RenewInterval {
			sent := time.Now()
			if ids, err := s.st.RenewLeases(ctx, token, s.opt.LeaseTTL); err == nil {
				renewed = sent
				r.held(ctx, ids, sent.Add(s.opt.LeaseTTL))
			} else if ctx.Err() == nil {
				s.log.Warn("webhook leases not renewed; attempts stop before they could lapse", "error", err.Error())
			}
		}
		sent := time.Now()
		if ids, err := s.st.ClaimEndpoints(ctx, token, s.opt.LeaseTTL, 100); err == nil {
			for _, id := range ids {
				r.start(ctx, id, sent.Add(s.opt.LeaseTTL))
			}
		} else if ctx.Err() == nil {
			s.log.Warn("webhook endpoints not claimed", "error", err.Error())
		}
		select {
		case <-ctx.Done():
			r.stopAll()
			<-pruneDone
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := s.st.ReleaseLeases(rctx, token, nil); err != nil {
				s.log.Warn("webhook leases not released; they expire", "error", err.Error())
			}
			cancel()
			s.log.Info("webhook delivery stopped", "lease_token", token)
			return
		case <-tick.C:
		}
	}
}

// runner is one Run's workers, by endpoint id.
type runner struct {
	s     *Service
	token string
	mu    sync.Mutex
	wg    sync.WaitGroup
	// workers holds the running workers; a worker removes itself when it
	// ends.
	workers map[string]*worker
}

// held takes the renewal's answer: the workers of leases no longer held
// stop, those still held learn their new expiry, and held leases without a
// worker (one that ended on an error) get one.
func (r *runner) held(ctx context.Context, ids []string, until time.Time) {
	held := make(map[string]bool, len(ids))
	for _, id := range ids {
		held[id] = true
	}
	r.mu.Lock()
	for id, w := range r.workers {
		if held[id] {
			w.extend(until)
		} else {
			w.cancel()
		}
	}
	r.mu.Unlock()
	for _, id := range ids {
		r.start(ctx, id, until)
	}
}

// start runs a worker for the endpoint id unless one runs.
func (r *runner) start(ctx context.Context, id string, until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.workers[id]; ok {
		return
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &worker{s: r.s, id: id, token: r.token, cancel: cancel, until: until,
		jitter: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	r.workers[id] = w
	r.wg.Go(func() {
		defer func() {
			cancel()
			r.s.metrics.forget(id)
			r.mu.Lock()
			if r.workers[id] == w {
				delete(r.workers, id)
			}
			r.mu.Unlock()
		}()
		w.deliver(wctx)
	})
}

// stopAll stops every worker and waits for them.
func (r *runner) stopAll() {
	r.mu.Lock()
	for _, w := range r.workers {
		w.cancel()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// worker delivers one endpoint while this replica holds its lease.
type worker struct {
	s      *Service
	id     string
	token  string
	cancel context.CancelFunc
	jitter *rand.Rand

	mu sync.Mutex
	// until is when the lease lapses at the earliest, on this host's
	// monotonic clock: when the claim or renewal that set it was sent,
	// plus the TTL (Postgres started counting later).
	until time.Time
}

func (w *worker) extend(until time.Time) {
	w.mu.Lock()
	if until.After(w.until) {
		w.until = until
	}
	w.mu.Unlock()
}

func (w *worker) leaseUntil() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.until
}

// errMoved: the endpoint's cursor moved (a replay) since the worker read
// it; what it read is dropped.
var errMoved = errors.New("delivery: the endpoint's cursor moved meanwhile")

// lostActor records a cursor move past a feed position a failover lost.
const lostActor = "contractd (feed position lost in a failover)"

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// gone reports whether err ends the worker: the endpoint was deleted, or
// the lease is no longer this replica's.
func gone(err error) bool {
	return domain.IsCode(err, domain.CodeResourceNotFound) || errors.Is(err, store.ErrNotHolder)
}

// deliver is one endpoint's delivery loop: read the endpoint; with no batch
// in flight, read up to domain.MaxBatchEvents rows after its cursor and
// save the batch (Plan) before its first attempt; attempt the batch in
// flight when it is due; record the attempt; Accept (the cursor moves past
// the batch) or Fail (the batch waits its back-off). It ends when ctx does,
// when the endpoint is deleted, or when the lease is lost.
func (w *worker) deliver(ctx context.Context) {
	s := w.s
	var (
		cachedID     string
		cachedEvents []domain.HistoryEntry
		lagAt        time.Time
		// next is the endpoint as the last attempt's outcome stored it
		// (read under its row lock): the next round starts from it
		// instead of reading the row again.
		next *domain.Endpoint
	)
	for ctx.Err() == nil {
		var e domain.Endpoint
		if next != nil {
			e, next = *next, nil
		} else {
			var err error
			e, err = s.st.EndpointState(ctx, w.id)
			if gone(err) {
				return
			}
			if err != nil {
				w.warn(ctx, "read the endpoint", err)
				sleep(ctx, s.opt.PollInterval)
				continue
			}
		}
		if time.Since(lagAt) >= time.Second {
			lagAt = time.Now()
			if n, secs, err := s.st.Lag(ctx, e.Cursor); err == nil {
				s.metrics.lagEvents.WithLabelValues(w.id).Set(float64(n))
				s.metrics.lagSeconds.WithLabelValues(w.id).Set(secs)
			}
		}
		if e.Paused {
			return
		}
		if !e.InFlight() {
			cursor := e.Cursor
			page, err := s.st.Feed(ctx, cursor, domain.MaxBatchEvents)
			if err != nil {
				w.warn(ctx, "read the feed", err)
				sleep(ctx, s.opt.PollInterval)
				continue
			}
			if page.Lost != nil {
				s.log.Warn("a webhook endpoint's cursor names a feed row a failover lost; it moves to the last row still held before it",
					"endpoint", w.id, "lost_position", *page.Lost, "cursor", page.Next)
				_, err := s.st.UpdateEndpointAsHolder(ctx, w.id, w.token, lostActor, func(e *domain.Endpoint) error {
					if e.Cursor != cursor {
						return errMoved
					}
					e.Replay(page.Next)
					return nil
				})
				if gone(err) {
					return
				}
				continue
			}
			if len(page.Items) == 0 {
				sleep(ctx, s.opt.PollInterval)
				continue
			}
			did := newUUID()
			e, err = s.st.UpdateEndpointAsHolder(ctx, w.id, w.token, "", func(e *domain.Endpoint) error {
				if e.Cursor != cursor {
					return errMoved
				}
				return e.Plan(did, page.Next, len(page.Items))
			})
			if gone(err) {
				return
			}
			if err != nil {
				if !errors.Is(err, errMoved) {
					w.warn(ctx, "save the next batch", err)
					sleep(ctx, s.opt.PollInterval)
				}
				continue
			}
			cachedID, cachedEvents = did, page.Items
		}
		if now := s.opt.Now(); !e.Due(now) {
			sleep(ctx, min(s.opt.PollInterval, e.NextAttemptAt.Sub(now)))
			continue
		}
		if cachedID != e.DeliveryID {
			events, err := s.st.FeedRange(ctx, e.Cursor, e.DeliveryThrough)
			if err != nil {
				w.warn(ctx, "read the batch in flight", err)
				sleep(ctx, s.opt.PollInterval)
				continue
			}
			cachedID, cachedEvents = e.DeliveryID, events
		}
		if len(cachedEvents) == 0 {
			// The batch's rows are gone (a failover lost them): there is
			// nothing to send, so nothing to wait for.
			s.log.Warn("a webhook batch's feed rows are gone; it is passed over", "endpoint", w.id, "delivery", e.DeliveryID)
			did := e.DeliveryID
			if _, err := s.st.UpdateEndpointAsHolder(ctx, w.id, w.token, "", func(e *domain.Endpoint) error { return e.Accept(did) }); gone(err) {
				return
			}
			continue
		}
		var ok bool
		if next, ok = w.send(ctx, e, cachedEvents); !ok {
			return
		}
	}
}

// send makes one attempt of the batch in flight on e, records it, and
// saves its outcome (Accept or Fail). It returns the endpoint as the
// outcome stored it (nil when it was not stored), and false when the
// worker must end: its context ended (the attempt's result is dropped),
// the endpoint was deleted, or the lease was lost.
func (w *worker) send(ctx context.Context, e domain.Endpoint, events []domain.HistoryEntry) (*domain.Endpoint, bool) {
	s := w.s
	did := e.DeliveryID
	body, err := batchBody(domain.DeliveryEvents, e.ID, did, events, e.DeliveryThrough)
	if err != nil {
		w.warn(ctx, "marshal the batch", err)
		sleep(ctx, s.opt.PollInterval)
		return nil, true
	}
	// The attempt ends before the lease could lapse on Postgres's clock,
	// should renewals fail meanwhile: no other replica can have begun
	// sending before it ends.
	deadline := w.leaseUntil().Add(-leaseMargin)
	if time.Until(deadline) < leaseMargin {
		sleep(ctx, s.opt.PollInterval)
		return nil, true
	}
	if d := time.Now().Add(domain.AttemptTimeout); d.Before(deadline) {
		deadline = d
	}
	actx, cancel := context.WithDeadline(ctx, deadline)
	a := s.attempt(actx, e, domain.DeliveryEvents, did, body, len(events))
	cancel()
	if ctx.Err() != nil {
		return nil, false
	}
	if _, kept, err := s.st.RecordAttempt(ctx, a); err != nil {
		w.warn(ctx, "record an attempt", err)
	} else if !kept {
		return nil, false
	}
	var saved domain.Endpoint
	if a.Accepted() {
		saved, err = s.st.UpdateEndpointAsHolder(ctx, w.id, w.token, "", func(e *domain.Endpoint) error { return e.Accept(did) })
	} else {
		now := s.opt.Now()
		saved, err = s.st.UpdateEndpointAsHolder(ctx, w.id, w.token, "", func(e *domain.Endpoint) error { return e.Fail(did, now, w.jitter) })
		s.log.Info("webhook delivery failed; it is sent again after a back-off", "endpoint", w.id, "delivery", did,
			"status", a.Status, "error", a.Error, "attempts", e.DeliveryAttempts+1)
	}
	if gone(err) {
		return nil, false
	}
	if err != nil {
		if !domain.IsCode(err, domain.CodeInvalidState) {
			w.warn(ctx, "save an attempt's outcome", err)
			sleep(ctx, s.opt.PollInterval)
		}
		return nil, true
	}
	return &saved, true
}

// warn logs a worker's failed step unless its context ended.
func (w *worker) warn(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	w.s.log.Warn("webhook delivery could not "+what, "endpoint", w.id, "error", err.Error())
}

// prune deletes attempts past domain.AttemptRetention every prune
// interval, until ctx ends.
func (s *Service) prune(ctx context.Context) {
	for {
		n, err := s.st.PruneAttempts(ctx, s.opt.Now().Add(-domain.AttemptRetention))
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("webhook attempts not pruned", "error", err.Error())
		case n > 0:
			s.log.Info("webhook attempts pruned", "deleted", n)
		}
		sleep(ctx, s.opt.PruneInterval)
		if ctx.Err() != nil {
			return
		}
	}
}
