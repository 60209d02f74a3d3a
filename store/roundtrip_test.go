package store_test

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/contractd/contractd/store"
	"github.com/jackc/pgx/v5/pgxpool"
)

// countingConn counts the writes a connection makes: pgx flushes once per
// round trip.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// roundTripStore is a store on one connection whose round trips are
// counted, in the default exec mode (cache_statement).
func roundTripStore(t *testing.T) (*store.Store, *pgtest.Schema, *atomic.Int64) {
	t.Helper()
	sch := pgtest.New(t)
	cfg, err := pgxpool.ParseConfig(sch.URL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 1
	writes := &atomic.Int64{}
	var d net.Dialer
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, writes: writes}, nil
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return store.New(pool), sch, writes
}

// TestRoundTripsPerOperation counts what each hot operation costs once its
// statements are prepared: a read is one round trip with no BEGIN or
// COMMIT; a transition (lock, then the writes with COMMIT) two; a
// notification (BEGIN with the inbox insert and the row lock, then the
// writes, the outcome and COMMIT) two. The rows say the writes committed.
func TestRoundTripsPerOperation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st, sch, writes := roundTripStore(t)
	for i, code := range []string{"rt-0", "rt-1", "rt-2", "rt-3"} {
		c := contractIn(code, domain.StateSessionIssued)
		if _, err := st.Create(ctx, c); err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
	}
	notify := func(code string) error {
		_, err := st.ReceiveNotification(ctx, store.Notification{NotificationID: "n-" + code, EventType: "PAPAY.SIGN",
			OutContractCode: code, CreateTime: time.Now(), Resource: []byte(`{}`)}, contractIn(code, domain.StateCreated),
			func(c *domain.Contract) (string, error) {
				_, err := c.Apply(ctx, domain.Change{Event: domain.EventSign, Source: domain.SourceNotification,
					ContractID: "wx-" + code, OpenID: "o-" + code}, time.Now())
				return "applied", err
			})
		return err
	}
	sign := func(code string) error {
		_, _, err := transition(ctx, st, domain.Key{OutContractCode: code}, domain.Change{Event: domain.EventSign,
			Source: domain.SourceNotification, ContractID: "wx-" + code, OpenID: "o-" + code})
		return err
	}
	get := func(code string) error {
		_, err := st.Get(ctx, domain.Key{OutContractCode: code})
		return err
	}
	for _, tc := range []struct {
		name       string
		warm, code string
		op         func(code string) error
		want       int64
	}{
		{"Get", "rt-0", "rt-1", get, 1},
		{"Update", "rt-0", "rt-1", sign, 2},
		{"ReceiveNotification", "rt-2", "rt-3", notify, 2},
	} {
		// The first run prepares the statements (cache_statement).
		if err := tc.op(tc.warm); err != nil {
			t.Fatalf("%s (warm-up): %v", tc.name, err)
		}
		before := writes.Load()
		if err := tc.op(tc.code); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := writes.Load() - before; got != tc.want {
			t.Errorf("%s: %d round trips, want %d", tc.name, got, tc.want)
		}
	}
	if n := countRows(t, sch, `SELECT count(*) FROM contracts WHERE state = 'signed'`); n != 4 {
		t.Errorf("%d contracts signed, want 4 (committed)", n)
	}
	if n := countRows(t, sch, `SELECT count(*) FROM wechat_notifications WHERE outcome = 'applied'`); n != 2 {
		t.Errorf("%d notifications applied, want 2 (committed)", n)
	}
	// A refusal after the lock rolls back: the connection is clean and the
	// next operation is as cheap as before.
	refused := errors.New("refused")
	if _, err := st.Update(ctx, domain.Key{OutContractCode: "rt-0"}, func(*domain.Contract) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("refused update: %v", err)
	}
	before := writes.Load()
	if err := get("rt-0"); err != nil {
		t.Fatal(err)
	}
	if got := writes.Load() - before; got != 1 {
		t.Errorf("get after a rollback: %d round trips, want 1", got)
	}
}
