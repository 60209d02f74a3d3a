package lifecycle

import (
	"context"
	"time"

	"github.com/contractd/contractd/domain"
)

// Sweep expires open sessions whose expiry has passed, one batch per
// transaction claimed with FOR UPDATE SKIP LOCKED, until none is due. Any
// number of replicas may sweep at once: each row is taken by exactly one of
// them, and the domain still decides each move. It returns how many
// sessions it expired.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		n, expired, err := s.sweepBatch(ctx)
		total += expired
		if err != nil || n < s.opt.SweepBatch {
			return total, err
		}
	}
}

// sweepBatch expires one batch; it returns how many sessions it locked and
// how many of them it expired.
func (s *Service) sweepBatch(ctx context.Context) (locked, expired int, err error) {
	now := s.opt.Now()
	done, err := s.store.UpdateDueSessions(ctx, now, s.opt.SweepBatch, func(c *domain.Contract) error {
		ch := domain.Change{Event: domain.EventExpire, Source: domain.SourceSweeper, OccurredAt: now,
			Details: map[string]any{"session_expires_at": c.SessionExpiresAt.UTC().Format(time.RFC3339Nano)}}
		_, err := c.Apply(ctx, ch, now)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	for _, p := range done {
		if p.Last().Outcome == domain.OutcomeApply {
			expired++
		}
		s.recordDecisions(ctx, p.Decided)
	}
	s.metrics.swept.Add(float64(expired))
	return len(done), expired, nil
}
