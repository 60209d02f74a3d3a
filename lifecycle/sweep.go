package lifecycle

import (
	"context"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/store"
)

// Sweep expires open sessions whose expiry has passed, one batch per
// transaction claimed with FOR UPDATE SKIP LOCKED, until none is due. Any
// number of replicas may sweep at once: each row is taken by exactly one of
// them, and the domain still decides each move. It returns how many
// sessions it expired.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := s.sweepBatch(ctx)
		total += n
		if err != nil || n < s.opt.SweepBatch {
			return total, err
		}
	}
}

func (s *Service) sweepBatch(ctx context.Context) (int, error) {
	n := 0
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		now := s.opt.Now()
		due, err := tx.LockDueSessions(ctx, now, s.opt.SweepBatch)
		if err != nil {
			return err
		}
		n = 0
		for i := range due {
			c := &due[i]
			ch := domain.Change{Event: domain.EventExpire, Source: domain.SourceSweeper, OccurredAt: now,
				Details: map[string]any{"session_expires_at": c.SessionExpiresAt.UTC().Format(time.RFC3339Nano)}}
			d, err := tx.Apply(ctx, c, ch)
			if err != nil {
				return err
			}
			s.metrics.decided(ch, d)
			if d.Outcome == domain.OutcomeApply {
				n++
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	s.metrics.swept.Add(float64(n))
	return n, nil
}
