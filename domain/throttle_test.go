package domain

import (
	"testing"
	"time"
)

func TestAuthThrottleDecides(t *testing.T) {
	rule := AuthThrottle{Limit: 5, Window: 15 * time.Minute}
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		count   AuthCount
		now     time.Time
		refused bool
		wait    time.Duration
	}{
		{"not counted", AuthCount{}, start, false, 0},
		{"the first failure", AuthCount{Failures: 1, WindowStart: start}, start, false, 0},
		{"the limit's failure", AuthCount{Failures: 5, WindowStart: start}, start, false, 0},
		{"beyond the limit", AuthCount{Failures: 6, WindowStart: start}, start.Add(time.Minute), true, 14 * time.Minute},
		{"at the window's very end", AuthCount{Failures: 9, WindowStart: start}, start.Add(15 * time.Minute), true, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := rule.Refuses(tc.count); got != tc.refused {
				t.Fatalf("Refuses = %v", got)
			}
			if !tc.refused {
				return
			}
			e := rule.Refusal(tc.count, tc.now)
			if e.Code != CodeTooManyRequests || e.RetryAfter != tc.wait {
				t.Fatalf("refusal %s, Retry-After %s, want %s", e.Code, e.RetryAfter, tc.wait)
			}
		})
	}
}
