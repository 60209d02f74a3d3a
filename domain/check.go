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
