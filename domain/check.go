package domain

import "time"

// maxCheckDoublings bounds the reconciliation back-off: the gap between
// two checks of one contract stops growing after this many doublings.
const maxCheckDoublings = 10

// ScheduleCheck records that the contract is being checked with WeChat at
// now and schedules its next reconciliation check: firstGap after now on
// the first check, twice as long on each later one (at most 2^10 times
// firstGap), so that one contract is asked about a bounded number of times.
// It is bookkeeping, not a change of the contract: neither its version nor
// its updated_at moves, and no history row is recorded.
func (c *Contract) ScheduleCheck(now time.Time, firstGap time.Duration) {
	next := now.Add(firstGap * time.Duration(1<<max(0, min(c.CheckCount, maxCheckDoublings))))
	c.NextCheckAt = &next
	c.CheckCount++
	c.scheduled = true
}

// Scheduled reports whether ScheduleCheck moved the contract's next check
// since it was read.
func (c *Contract) Scheduled() bool { return c.scheduled }

// NeedsHealing reports whether WeChat should be asked about the contract
// after a failover that promoted a standby at promotedAt, because the
// promotion may have lost what WeChat told us about it: an open session
// of any age (a lost signing leaves the row as it was when the session was
// issued), and any contract not terminated that changed within window
// before the promotion (a lost termination leaves it signed, a lost
// expiry or signing leaves it where it was). A terminated contract is
// final and is never asked about again.
func (c *Contract) NeedsHealing(promotedAt time.Time, window time.Duration) bool {
	switch {
	case c.State == StateTerminated:
		return false
	case c.State == StateSessionIssued:
		return true
	default:
		return !c.UpdatedAt.Before(promotedAt.Add(-window))
	}
}

// MarkForHealing makes the contract due for a healing check at now when
// NeedsHealing says so, and reports whether it did. Like ScheduleCheck it
// is bookkeeping: no version, updated_at or history moves.
func (c *Contract) MarkForHealing(now, promotedAt time.Time, window time.Duration) bool {
	if !c.NeedsHealing(promotedAt, window) {
		return false
	}
	c.HealDueAt = &now
	c.scheduled = true
	return true
}

// ClaimHealing records that the healing check of a contract marked by
// MarkForHealing is being made, so that it is made once: the mark is
// cleared. A contract whose regular reconciliation is still going on
// (session_issued, expired) keeps its own schedule.
func (c *Contract) ClaimHealing() {
	c.HealDueAt = nil
	c.scheduled = true
}

// RetryHealing makes a contract whose healing check could not be made
// (WeChat did not answer) due again at at, so that the healing is not
// lost with the failed call. A terminated contract needs none.
func (c *Contract) RetryHealing(at time.Time) {
	if c.State == StateTerminated {
		return
	}
	c.HealDueAt = &at
	c.scheduled = true
}
