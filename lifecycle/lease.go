package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/store"
	"github.com/prometheus/client_golang/prometheus"
)

// holdLease keeps the lease that token holds on the contract with key alive
// while its holder calls WeChat: it renews the lease every third of
// LeaseTTL until the returned stop is called (stop waits for the renewer to
// end). When the lease has passed to another holder, renewing stops; the
// holder's outcome is then not recorded as the lease holder's (the domain
// sees to that when it is saved).
func (s *Service) holdLease(ctx context.Context, key domain.Key, token string) (stop func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer s.recoverPanic(ctx, "lease")
		tick := time.NewTicker(s.opt.LeaseTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			_, err := s.store.UpdateAsLeaseHolder(ctx, key, func(c *domain.Contract) error {
				return c.RenewLease(token, s.opt.Now(), s.opt.LeaseTTL)
			})
			switch {
			case domain.IsCode(err, domain.CodeLeaseLost):
				s.log.WarnContext(ctx, "lease passed to another holder during a WeChat call", "contract", key.String())
				return
			case err != nil && ctx.Err() == nil:
				s.log.WarnContext(ctx, "lease renewal failed", "contract", key.String(), "error", err.Error())
			}
		}
	}()
	return func() { cancel(); <-done }
}

// awaitLease waits until the contract's lease looks free or deadline
// passes, looking with plain reads (no lock, no transaction held) at a
// growing interval. The caller then decides again.
func (s *Service) awaitLease(ctx context.Context, key domain.Key, deadline time.Time) error {
	for pause := 10 * time.Millisecond; ; pause = min(pause*2, 200*time.Millisecond) {
		left := deadline.Sub(s.opt.Now())
		if left <= 0 {
			return nil
		}
		if err := sleep(ctx, min(pause, left)); err != nil {
			return &domain.Error{Code: domain.CodeUnavailable, Message: "the caller went away while waiting for a concurrent call of the same contract", Err: err}
		}
		c, err := s.store.Get(ctx, key)
		if err != nil {
			return err
		}
		if !c.LeaseHeld(s.opt.Now()) {
			return nil
		}
	}
}

// saveOutcome records what a call to WeChat came to (fn, a domain
// decision, run under the store's Update). WeChat has already acted, so a
// short database outage (a restart, a fail-over) must not lose its word:
// while the database is unavailable, or the contract's row stays locked
// past the lock timeout, the update is retried for up to SaveRetry. The
// caller's cancellation does not stop it.
func (s *Service) saveOutcome(ctx context.Context, key domain.Key, fn func(c *domain.Contract) error) (domain.Contract, error) {
	ctx = context.WithoutCancel(ctx)
	deadline := s.opt.Now().Add(s.opt.SaveRetry)
	for pause := 100 * time.Millisecond; ; pause = min(pause*2, time.Second) {
		c, err := s.updateAsLeaseHolder(ctx, key, fn)
		retry := domain.IsCode(err, domain.CodeUnavailable) || errors.Is(err, store.ErrLockTimeout)
		if !retry || !s.opt.Now().Add(pause).Before(deadline) {
			return c, err
		}
		s.log.WarnContext(ctx, "database unavailable or the row locked while saving a WeChat outcome; retrying", "contract", key.String(), "error", err.Error())
		_ = sleep(ctx, pause)
	}
}

// NewPanicCounter makes the counter of recovered panics,
// contractd_panics_total, labelled by where the panic happened. serve
// registers one and hands it to the flows and the HTTP layer.
func NewPanicCounter() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "contractd_panics_total",
		Help: "Panics recovered, by where they happened."}, []string{"where"})
}

// recoverPanic, deferred, turns a panic of a background goroutine into an
// error log line with its stack and a count, so one bad contract cannot
// take the process down.
func (s *Service) recoverPanic(ctx context.Context, where string) {
	if r := recover(); r != nil {
		s.logPanic(ctx, where, r)
	}
}

func (s *Service) logPanic(ctx context.Context, where string, r any) {
	s.metrics.panics.WithLabelValues(where).Inc()
	s.log.ErrorContext(ctx, "panic recovered", "where", where, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
}
