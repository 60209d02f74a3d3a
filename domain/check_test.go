package domain_test

import (
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
)

// ScheduleCheck doubles the gap to the next check with every earlier check,
// at most 2^10 times, counts the check, and changes nothing else.
func TestScheduleCheck(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		checks  int
		wantGap time.Duration
	}{
		{0, time.Minute},
		{1, 2 * time.Minute},
		{3, 8 * time.Minute},
		{10, 1024 * time.Minute},
		{25, 1024 * time.Minute},
	} {
		c := domain.Contract{OutContractCode: "c", State: domain.StateSessionIssued, Version: 3, CheckCount: tc.checks}
		c.ScheduleCheck(now, time.Minute)
		if c.NextCheckAt == nil || !c.NextCheckAt.Equal(now.Add(tc.wantGap)) || c.CheckCount != tc.checks+1 {
			t.Errorf("after %d checks: next %v, count %d; want now+%s, %d", tc.checks, c.NextCheckAt, c.CheckCount, tc.wantGap, tc.checks+1)
		}
		if !c.Scheduled() || c.Dirty() || c.Version != 3 || len(c.Decided()) != 0 {
			t.Errorf("after %d checks: scheduled %v dirty %v version %d, %d decisions; want only the schedule moved",
				tc.checks, c.Scheduled(), c.Dirty(), c.Version, len(c.Decided()))
		}
	}
}
