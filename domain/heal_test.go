package domain

import (
	"testing"
	"time"
)

// After a promotion, WeChat is asked about every open session whatever its
// age and every contract not terminated that changed within the window
// before the promotion; never about a terminated one, nor one that last
// changed before the window. The mark and its claim are bookkeeping: no
// version, no history.
func TestNeedsHealingAndItsMark(t *testing.T) {
	promoted := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	const window = time.Hour
	for _, tc := range []struct {
		state   State
		changed time.Duration // before the promotion
		want    bool
	}{
		{StateSessionIssued, 30 * 24 * time.Hour, true},
		{StateSessionIssued, time.Minute, true},
		{StateSigned, time.Minute, true},
		{StateSigned, window, true},
		{StateSigned, window + time.Second, false},
		{StateExpired, 10 * time.Minute, true},
		{StateExpired, 2 * window, false},
		{StateCreated, time.Minute, true},
		{StateTerminated, time.Minute, false},
		{StateSigned, -time.Minute, true}, // changed after the promotion
	} {
		c := Contract{State: tc.state, Version: 4, UpdatedAt: promoted.Add(-tc.changed)}
		now := promoted.Add(5 * time.Second)
		if got := c.MarkForHealing(now, promoted, window); got != tc.want || c.NeedsHealing(promoted, window) != tc.want {
			t.Errorf("%s changed %s before: marked %v, want %v", tc.state, tc.changed, got, tc.want)
		}
		if tc.want != (c.HealDueAt != nil && c.HealDueAt.Equal(now)) || tc.want != c.Scheduled() {
			t.Errorf("%s changed %s before: due %v scheduled %v", tc.state, tc.changed, c.HealDueAt, c.Scheduled())
		}
		if c.Version != 4 || c.Dirty() || len(c.Pending()) != 0 {
			t.Errorf("%s: the mark moved the version or recorded history", tc.state)
		}
		if tc.want {
			c.ClaimHealing()
			if c.HealDueAt != nil || c.Version != 4 || c.Dirty() {
				t.Errorf("%s: the claim left %v at version %d", tc.state, c.HealDueAt, c.Version)
			}
		}
	}
}

// A failed healing check is due again at the time given, unless the
// contract is terminated (it needs none); a retry is bookkeeping too.
func TestRetryHealing(t *testing.T) {
	at := time.Date(2026, 12, 3, 10, 1, 0, 0, time.UTC)
	c := Contract{State: StateSigned, Version: 2}
	c.RetryHealing(at)
	if c.HealDueAt == nil || !c.HealDueAt.Equal(at) || !c.Scheduled() || c.Version != 2 || c.Dirty() {
		t.Fatalf("signed: due %v scheduled %v version %d", c.HealDueAt, c.Scheduled(), c.Version)
	}
	d := Contract{State: StateTerminated}
	d.RetryHealing(at)
	if d.HealDueAt != nil || d.Scheduled() {
		t.Fatalf("terminated: due %v scheduled %v, want neither", d.HealDueAt, d.Scheduled())
	}
}
