package lifecycle

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// RunWorkers runs the expiry sweeper, reconciliation and the watch on the
// database's timeline (WatchTimeline: the healing after a failover) until
// ctx ends. Every replica may run them: the store's SKIP LOCKED claims
// split the work, and one insert decides which replica schedules a
// healing.
func (s *Service) RunWorkers(ctx context.Context, sweepEvery, reconcileEvery, timelineEvery time.Duration) {
	done := make(chan struct{}, 3)
	go func() { s.loop(ctx, "sweep", sweepEvery, s.Sweep); done <- struct{}{} }()
	go func() { s.loop(ctx, "reconcile", reconcileEvery, s.Reconcile); done <- struct{}{} }()
	go func() { s.loop(ctx, "heal", timelineEvery, s.WatchTimeline); done <- struct{}{} }()
	<-done
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
