package store

import (
	"context"
	"errors"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/jackc/pgx/v5"
)

// TimelineSeen is what ObserveTimeline found.
type TimelineSeen struct {
	// Timeline is the database's current timeline (contractd_timeline(),
	// migrations/00006): a promotion moves it up.
	Timeline int64
	// New says that this call recorded the timeline first, of every
	// replica.
	New bool
	// Promoted says that a smaller timeline was recorded before: the
	// database was promoted from a standby, and the healing was scheduled
	// in the same transaction. PromotedAt is when the timeline was first
	// seen (the database's clock).
	Promoted   bool
	PromotedAt time.Time
	// Marked are the contracts the healing made due, as persisted.
	Marked []Persisted
}

// ObserveTimeline reads the database's current timeline and, when no
// replica has recorded it yet, records it in timelines. The replica whose
// INSERT ... ON CONFLICT DO NOTHING wins, when a smaller timeline was
// recorded before (a promotion; the first timeline a database is seen on
// heals nothing), also locks, in the same transaction, every contract that
// may have lost what WeChat told us (healCandidatesSQL: every open session,
// and every contract not terminated that changed within window before the
// timeline was first seen), hands each to mark (the domain's
// domain.Contract.MarkForHealing) and persists the marks. So the healing
// is scheduled exactly once across replicas, and a transaction that fails
// (a lock timeout, the database going away) records nothing: the next
// observation, by any replica, tries again.
//
// It must run on the primary: the timeline is computed from the WAL
// being written.
func (s *Store) ObserveTimeline(ctx context.Context, window time.Duration, mark func(c *domain.Contract, promotedAt time.Time) error) (TimelineSeen, error) {
	var (
		seen  TimelineSeen
		known bool
	)
	b := &pgx.Batch{}
	b.Queue(`SELECT tl, EXISTS (SELECT 1 FROM timelines WHERE timeline = tl) FROM (SELECT contractd_timeline() AS tl) cur`).
		QueryRow(func(r pgx.Row) error { return r.Scan(&seen.Timeline, &known) })
	if err := s.sendBounded(ctx, b); err != nil || known {
		return seen, err
	}
	err := s.InTx(ctx, func(tx *Tx) error {
		seen.New, seen.Promoted, seen.Marked = false, false, nil
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO timelines (timeline) VALUES ($1) ON CONFLICT DO NOTHING RETURNING first_seen_at`, seen.Timeline)
		b.Queue(`SELECT EXISTS (SELECT 1 FROM timelines WHERE timeline < $1)`, seen.Timeline)
		br := tx.SendBatch(ctx, b)
		err := br.QueryRow().Scan(&seen.PromotedAt)
		switch {
		case err == nil:
			seen.New = true
		case errors.Is(err, pgx.ErrNoRows):
			// Another replica recorded it first: its transaction
			// scheduled the healing.
		default:
			_ = br.Close()
			return mapErr(err)
		}
		var earlier bool
		if err := br.QueryRow().Scan(&earlier); err != nil {
			_ = br.Close()
			return mapErr(err)
		}
		if err := br.Close(); err != nil {
			return mapErr(err)
		}
		if !seen.New || !earlier {
			return nil
		}
		seen.Promoted = true
		claimed, err := collectContracts(ctx, tx, healCandidatesSQL, seen.PromotedAt, window)
		if err != nil {
			return err
		}
		var wb pgx.Batch
		reads := make([]func(pgx.BatchResults) (domain.Contract, error), 0, len(claimed))
		for _, c := range claimed {
			before := c
			if err := mark(&c, seen.PromotedAt); err != nil {
				return err
			}
			if !c.Scheduled() {
				continue
			}
			seen.Marked = append(seen.Marked, persisted(c, c))
			reads = append(reads, queuePersist(&wb, before, c))
		}
		if wb.Len() == 0 {
			return nil
		}
		return tx.commitWith(ctx, &wb, func(br pgx.BatchResults) error {
			for i, read := range reads {
				saved, err := read(br)
				if err != nil {
					return err
				}
				seen.Marked[i].Contract = saved
			}
			return nil
		})
	})
	if err != nil {
		return TimelineSeen{Timeline: seen.Timeline}, err
	}
	return seen, nil
}

// healCandidatesSQL selects, and locks, the contracts a promotion first
// seen at $1 may have left behind WeChat: every open session whatever its
// age (a lost signing leaves the row as it was when the session was
// issued), and every contract not terminated that changed within $2 before
// $1. The domain (domain.Contract.NeedsHealing) decides on each. It waits
// for a row another transaction holds (within the lock timeout): the
// healing must reach every one.
const healCandidatesSQL = `SELECT ` + contractColumns + ` FROM contracts
	WHERE state = 'session_issued'
	   OR (state <> 'terminated' AND updated_at >= $1::timestamptz - $2::interval)
	ORDER BY id
	FOR UPDATE`

// healDueSQL selects, and locks, contracts the healing made due by $1.
// SKIP LOCKED lets every replica's healing share them; the predicate
// matches the partial index contracts_heal_due.
const healDueSQL = `SELECT ` + contractColumns + ` FROM contracts
	WHERE heal_due_at IS NOT NULL AND heal_due_at <= $1
	ORDER BY heal_due_at, id
	LIMIT $2
	FOR UPDATE SKIP LOCKED`

// ClaimHealDue locks up to limit contracts the healing made due by now,
// hands each to claim (the domain's domain.Contract.ClaimHealing, which
// clears the mark so that each is asked about once) and persists them all
// in one transaction, as ClaimReconcileDue does.
func (s *Store) ClaimHealDue(ctx context.Context, now time.Time, limit int, claim func(c *domain.Contract) error) ([]Persisted, error) {
	return s.updateClaimed(ctx, claim, healDueSQL, now, limit)
}

// Timelines returns the timelines recorded so far and when each was first
// seen.
func (s *Store) Timelines(ctx context.Context) (map[int64]time.Time, error) {
	out := map[int64]time.Time{}
	b := &pgx.Batch{}
	b.Queue(`SELECT timeline, first_seen_at FROM timelines`).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var (
				tl int64
				at time.Time
			)
			if err := rows.Scan(&tl, &at); err != nil {
				return err
			}
			out[tl] = at
		}
		return rows.Err()
	})
	if err := s.sendBounded(ctx, b); err != nil {
		return nil, mapErr(err)
	}
	return out, nil
}
