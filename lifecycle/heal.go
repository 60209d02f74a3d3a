package lifecycle

import (
	"context"
	"time"

	"github.com/contractd/contractd/domain"
)

// WatchTimeline is one round of the healing after a failover, which every
// replica runs every few seconds (RunWorkers). With asynchronous
// replication a promoted standby may lack the old primary's last
// transactions: a notification contractd acknowledged (WeChat never sends
// it again), a termination, an expiry. So:
//
//  1. It reads the database's timeline (store.Store.ObserveTimeline). The
//     one replica that records a new timeline greater than one recorded
//     before (a promotion; the first timeline a database is seen on heals
//     nothing) marks, in the same transaction, every contract the promotion
//     may have left behind WeChat due for a check now: the domain decides
//     which (domain.Contract.MarkForHealing: every open session, every
//     contract not terminated that changed within Options.HealWindow
//     before the promotion).
//  2. It claims marked contracts (any replica; SKIP LOCKED splits them),
//     clearing each mark (domain.Contract.ClaimHealing), asks WeChat about
//     each and applies the answer as reconciliation does (source
//     reconcile): signed stays signed, a termination WeChat knows is
//     applied, a signing it knows is applied. A check WeChat does not
//     answer (after the usual retries) is marked again, due
//     Options.ReconcileFirstGap later (domain.Contract.RetryHealing).
//
// So healing starts within a round of the promotion and goes on, batch
// after batch, until no marked contract is left, instead of waiting for
// reconciliation's schedule. It returns how many contracts it checked.
func (s *Service) WatchTimeline(ctx context.Context) (int, error) {
	now := s.opt.Now()
	seen, err := s.store.ObserveTimeline(ctx, s.opt.HealWindow, func(c *domain.Contract, promotedAt time.Time) error {
		c.MarkForHealing(now, promotedAt, s.opt.HealWindow)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if seen.Promoted {
		s.log.WarnContext(ctx, "the database is on a new timeline: a standby was promoted, and what the old primary wrote last may be lost; asking WeChat about the contracts it may concern",
			"timeline", seen.Timeline, "first_seen_at", seen.PromotedAt, "contracts", len(seen.Marked), "window", s.opt.HealWindow.String())
	} else if seen.New {
		s.log.InfoContext(ctx, "database timeline recorded", "timeline", seen.Timeline)
	}
	return s.Heal(ctx)
}

// Heal claims the contracts the healing marked due, batch after batch
// until none is left, asks WeChat about each and applies its answer (see
// WatchTimeline). It returns how many contracts it checked.
func (s *Service) Heal(ctx context.Context) (int, error) {
	checked := 0
	for {
		now := s.opt.Now()
		due, err := s.store.ClaimHealDue(ctx, now, s.opt.ReconcileBatch, func(c *domain.Contract) error {
			c.ClaimHealing()
			return nil
		})
		if err != nil {
			return checked, err
		}
		for _, p := range due {
			if ctx.Err() != nil {
				return checked, ctx.Err()
			}
			c := p.Contract
			checked++
			if err := s.askWeChat(ctx, c, "healing"); err != nil {
				// The mark was cleared when the check was claimed: set it
				// again, a reconciliation gap later, so that the healing
				// is retried rather than lost with the call.
				retryAt := s.opt.Now().Add(s.opt.ReconcileFirstGap)
				s.log.WarnContext(ctx, "healing check failed; it will be retried", "contract", c.Key().String(), "error", err.Error(), "retry_at", retryAt)
				if _, uerr := s.store.Update(ctx, c.Key(), func(c *domain.Contract) error {
					c.RetryHealing(retryAt)
					return nil
				}); uerr != nil {
					s.log.ErrorContext(ctx, "healing check could not be rescheduled", "contract", c.Key().String(), "error", uerr.Error())
				}
			}
		}
		if len(due) < s.opt.ReconcileBatch {
			return checked, nil
		}
	}
}
