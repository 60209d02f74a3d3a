package lifecycle_test

import (
	"context"
	"fmt"
	"github.com/contractd/contractd/config"
	"testing"

	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/lifecycle"
	"github.com/contractd/contractd/store"
)

// seedSessions fills the schema with total open sessions, none due.
func seedSessions(b *testing.B, s *pgtest.Schema, total int) {
	b.Helper()
	ctx := context.Background()
	if _, err := s.Pool.Exec(ctx, `INSERT INTO contracts (out_contract_code, product, channel, plan_id, state, session_id, session_expires_at)
		SELECT 'bench-' || g, 'papay', 'app', 1, 'session_issued', 's-' || g, now() + interval '1 hour'
		FROM generate_series(1, $1) g`, total); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Pool.Exec(ctx, `ANALYZE contracts`); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkSweep measures one sweep that expires 1,000 due sessions, in
// tables of growing size. Issue 5 asks that the sweep's cost follow the
// number of due rows, not the table size: ns/op should stay flat across the
// sizes. Each iteration makes 1,000 sessions due (outside the timer) and
// sweeps them.
func BenchmarkSweep(b *testing.B) {
	for _, total := range []int{10_000, 100_000, 300_000} {
		b.Run(fmt.Sprintf("table=%d/due=1000", total), func(b *testing.B) {
			s := pgtest.New(b)
			seedSessions(b, s, total)
			svc := lifecycle.New(store.New(s.Pool), nil, nil, sweepOptions(0)) // the default batch
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				// Re-open 1,000 sessions (expired ones go back to issued) and make them due.
				if _, err := s.Pool.Exec(ctx, `UPDATE contracts SET state = 'session_issued', session_expires_at = now() - interval '1 minute'
					WHERE id IN (SELECT id FROM contracts ORDER BY id LIMIT 1000)`); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				n, err := svc.Sweep(ctx)
				if err != nil || n != 1000 {
					b.Fatalf("swept %d: %v", n, err)
				}
			}
		})
	}
}

// sweepOptions are the flows' options for a sweep only: the required ones
// at config's defaults.
func sweepOptions(batch int) lifecycle.Options {
	return lifecycle.Options{SweepBatch: batch, LeaseTTL: config.DefaultLeaseTTL, PresignWait: config.DefaultLeaseWait,
		ReconcileMinAge: config.DefaultReconcileAfter, ReconcileFirstGap: config.DefaultReconcileAfter,
		ReconcileLookBack: config.DefaultReconcileLookBack, HealWindow: config.DefaultHealWindow}
}
