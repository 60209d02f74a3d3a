package pgcluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/contractd/contractd/internal/pgcluster"
	"github.com/jackc/pgx/v5"
)

func TestClusterServesAndSurvivesARestartAndAStop(t *testing.T) {
	t.Parallel()
	c := pgcluster.Start(t)
	ctx := context.Background()
	startedAt := func() time.Time {
		t.Helper()
		conn, err := pgx.Connect(ctx, c.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var at time.Time
		if err := conn.QueryRow(ctx, `SELECT pg_postmaster_start_time()`).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	before := startedAt()
	c.Restart(t)
	if after := startedAt(); !after.After(before) {
		t.Fatalf("the server did not restart: started %s, then %s", before, after)
	}
	c.Stop(t)
	if conn, err := pgx.Connect(ctx, c.URL); err == nil {
		conn.Close(ctx)
		t.Fatal("a stopped cluster accepted a connection")
	}
	c.StartAgain(t)
	startedAt()
}
