package store

import (
	"testing"
	"time"
)

// A bound reaches Postgres as whole milliseconds, rounded up so that no
// bound is taken for none; no bound is "0", Postgres's own "no limit".
func TestMillisIsWhatPostgresReads(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0"},
		{-time.Second, "0"},
		{time.Nanosecond, "1"},
		{time.Millisecond, "1"},
		{1500 * time.Microsecond, "2"},
		{2 * time.Second, "2000"},
	} {
		if got := millis(c.d); got != c.want {
			t.Errorf("millis(%s) = %q, want %q", c.d, got, c.want)
		}
	}
}
