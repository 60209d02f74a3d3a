package lifecycle

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// RunWorkers runs the expiry sweeper and reconciliation until ctx ends.
// Every replica may run them: the store's SKIP LOCKED claims split the work.
func (s *Service) RunWorkers(ctx context.Context, sweepEvery, reconcileEvery time.Duration) {
	done := make(chan struct{}, 2)
	go func() { s.loop(ctx, "sweep", sweepEvery, s.Sweep); done <- struct{}{} }()
	go func() { s.loop(ctx, "reconcile", reconcileEvery, s.Reconcile); done <- struct{}{} }()
	<-done
	<-done
}

// loop calls work every period (with a little jitter so replicas spread
// out) until ctx ends, logging failures and what was done.
func (s *Service) loop(ctx context.Context, name string, period time.Duration, work func(context.Context) (int, error)) {
	for {
		jitter := time.Duration(rand.Int64N(int64(period)/5 + 1))
		if sleep(ctx, period+jitter) != nil {
			return
		}
		n, err := s.guarded(ctx, name, work)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Error(name+" failed", "error", err.Error())
		case n > 0:
			s.log.Info(name, "contracts", n)
		}
	}
}

// guarded runs one round of a worker, turning a panic into a logged,
// counted error so that the worker goes on with its next round.
func (s *Service) guarded(ctx context.Context, name string, work func(context.Context) (int, error)) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.New("panic recovered")
			s.logPanic(ctx, name, r)
		}
	}()
	return work(ctx)
}
