package pgcluster_test

import (
	"context"
	"testing"

	"github.com/contractd/contractd/internal/pgcluster"
	"github.com/jackc/pgx/v5"
)

// timelineSQL is the writer's timeline as migrations/00006 computes it.
const timelineSQL = `SELECT ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::bigint`

// A standby promoted after its primary died writes on timeline 2, which
// the first 8 hex digits of the current WAL file's name show, and the
// transactions the primary wrote after the standby stopped are gone.
func TestPromotedStandbyIsOnANewTimeline(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	primary := pgcluster.Start(t)
	exec := func(url, sql string, args ...any) {
		t.Helper()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	one := func(url, sql string, dst any) {
		t.Helper()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if err := conn.QueryRow(ctx, sql).Scan(dst); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(primary.URL, `CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY, xid bigint DEFAULT pg_current_xact_id()::text::bigint, v text)`)
	exec(primary.URL, `INSERT INTO t (v) VALUES ('kept')`)
	var tl int64
	one(primary.URL, timelineSQL, &tl)
	if tl != 1 {
		t.Fatalf("primary's timeline %d, want 1", tl)
	}
	standby := primary.StartStandby(t)
	var lostXID int64
	primary.FailOver(t, standby, func() {
		exec(primary.URL, `INSERT INTO t (v) VALUES ('lost')`)
		one(primary.URL, `SELECT xid FROM t WHERE v = 'lost'`, &lostXID)
	})
	one(standby.URL, timelineSQL, &tl)
	if tl != 2 {
		t.Fatalf("promoted standby's timeline %d, want 2", tl)
	}
	var n int
	one(standby.URL, `SELECT count(*) FROM t WHERE v = 'lost'`, &n)
	if n != 0 {
		t.Fatalf("%d lost rows on the promoted standby, want 0", n)
	}
	exec(standby.URL, `INSERT INTO t (v) VALUES ('new')`)
	var newXID int64
	one(standby.URL, `SELECT xid FROM t WHERE v = 'new'`, &newXID)
	// The new leader hands out transaction ids the lost history already
	// used: its first write sorts at or below the lost one by xid.
	if newXID > lostXID {
		t.Fatalf("new leader's xid %d, above the lost row's %d", newXID, lostXID)
	}
}
