package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
)

var testThrottle = domain.AuthThrottle{Limit: 5, Window: 15 * time.Minute}

// attemptsTogether runs one CountAuthAttempt per entry of failed at once
// from address and returns the counts in the same order.
func attemptsTogether(t *testing.T, count func(ctx context.Context, address string, failed bool, th domain.AuthThrottle) (domain.AuthCount, error),
	address string, failed []bool) []domain.AuthCount {
	t.Helper()
	counts := make([]domain.AuthCount, len(failed))
	errs := make([]error, len(failed))
	together(len(failed), func(i int) {
		counts[i], errs[i] = count(context.Background(), address, failed[i], testThrottle)
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	return counts
}

// 100 wrong tokens at once from one address each get their own place in
// line: the counts are exactly 1 to 100, so exactly the limit of them are
// let through.
func TestCountAuthAttemptCountsConcurrentFailuresOneByOne(t *testing.T) {
	t.Parallel()
	st, db := newStore(t)
	const n = 100
	counts := attemptsTogether(t, st.CountAuthAttempt, "198.51.100.1", slices.Repeat([]bool{true}, n))
	var got []int64
	through := 0
	for _, c := range counts {
		got = append(got, c.Failures)
		if !testThrottle.Refuses(c) {
			through++
		}
	}
	slices.Sort(got)
	for i, f := range got {
		if f != int64(i+1) {
			t.Fatalf("counts %v, want 1..%d", got, n)
		}
	}
	if through != testThrottle.Limit {
		t.Fatalf("%d attempts let through, want %d", through, testThrottle.Limit)
	}
	if rows := countRows(t, db, `SELECT count(*) FROM auth_failures WHERE failures = $1`, n); rows != 1 {
		t.Fatalf("%d rows holding the count %d", rows, n)
	}
}

// Right and wrong tokens at once: the limit's places go to wrong tokens
// only, so exactly the limit of wrong tokens are let through whatever the
// interleaving; a right token is let through only ahead of the limit's
// failure, and counted when refused.
func TestCountAuthAttemptMixedRightAndWrongTokens(t *testing.T) {
	t.Parallel()
	st, db := newStore(t)
	failed := make([]bool, 100)
	for i := range failed {
		failed[i] = i%2 == 0
	}
	counts := attemptsTogether(t, st.CountAuthAttempt, "198.51.100.2", failed)
	wrongThrough, rightRefused := 0, 0
	for i, c := range counts {
		switch {
		case failed[i] && !testThrottle.Refuses(c):
			wrongThrough++
		case !failed[i] && testThrottle.Refuses(c):
			rightRefused++
		case !failed[i] && c.Failures != 0:
			t.Fatalf("a right token let through with count %d", c.Failures)
		}
	}
	if wrongThrough != testThrottle.Limit {
		t.Fatalf("%d wrong tokens let through, want %d", wrongThrough, testThrottle.Limit)
	}
	if n := countRows(t, db, `SELECT failures FROM auth_failures WHERE address = '198.51.100.2'`); n != 50+rightRefused {
		t.Fatalf("row counts %d attempts, want 50 wrong + %d refused right ones", n, rightRefused)
	}
}

func TestCountAuthAttemptWindows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, db := newStore(t)
	lapse := func(address string) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, `UPDATE auth_failures SET window_start = now() - interval '16 minutes' WHERE address = $1`, address); err != nil {
			t.Fatal(err)
		}
	}
	attempt := func(address string, failed bool) domain.AuthCount {
		t.Helper()
		c, err := st.CountAuthAttempt(ctx, address, failed, testThrottle)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cases := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"a right token from a clean address writes nothing", func(t *testing.T) {
			if c := attempt("192.0.2.1", false); c.Failures != 0 || countRows(t, db, `SELECT count(*) FROM auth_failures WHERE address = '192.0.2.1'`) != 0 {
				t.Fatalf("count %+v", c)
			}
		}},
		{"a right token below the limit is not counted", func(t *testing.T) {
			for range 4 {
				attempt("192.0.2.2", true)
			}
			if c := attempt("192.0.2.2", false); c.Failures != 0 {
				t.Fatalf("count %+v", c)
			}
			if c := attempt("192.0.2.2", true); c.Failures != 5 || testThrottle.Refuses(c) {
				t.Fatalf("the fifth failure: %+v", c)
			}
			if c := attempt("192.0.2.2", false); c.Failures != 6 || !testThrottle.Refuses(c) {
				t.Fatalf("a right token at the limit: %+v", c)
			}
		}},
		{"the window runs from the first failure and a new one starts after it", func(t *testing.T) {
			first := attempt("192.0.2.3", true)
			for range 6 {
				if c := attempt("192.0.2.3", true); !c.WindowStart.Equal(first.WindowStart) {
					t.Fatalf("window moved from %v to %v", first.WindowStart, c.WindowStart)
				}
			}
			lapse("192.0.2.3")
			if c := attempt("192.0.2.3", false); c.Failures != 0 {
				t.Fatalf("a right token after the window: %+v", c)
			}
			if c := attempt("192.0.2.3", true); c.Failures != 1 || !c.WindowStart.After(first.WindowStart) {
				t.Fatalf("a failure after the window: %+v", c)
			}
		}},
		{"lapsed addresses are forgotten, others kept", func(t *testing.T) {
			attempt("192.0.2.4", true)
			attempt("192.0.2.5", true)
			lapse("192.0.2.4")
			if err := st.ForgetAuthFailures(ctx, testThrottle.Window); err != nil {
				t.Fatal(err)
			}
			if n := countRows(t, db, `SELECT count(*) FROM auth_failures WHERE address IN ('192.0.2.4', '192.0.2.5')`); n != 1 ||
				countRows(t, db, `SELECT count(*) FROM auth_failures WHERE address = '192.0.2.5'`) != 1 {
				t.Fatalf("%d rows left", n)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, tc.check)
	}
}
