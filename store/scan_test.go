package store

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// scanContract must read what matching columns to fields by name reads,
// for a contract with every field set: a column added to contractColumns
// but not to scanContract (or the other way round) fails here.
func TestScanContractReadsEveryColumn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	st := New(db.Pool)
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	ts := func(d time.Duration) *time.Time { v := at.Add(d); return &v }
	plan, service := int64(123), int64(456)
	full := domain.Contract{SubMchID: "1900000109", OutContractCode: "scan-1", Product: domain.ProductPapay,
		Channel: domain.ChannelApp, PlanID: &plan, ServiceID: &service, State: domain.StateSigned, Version: 7,
		SessionID: "sess", SessionExpiresAt: ts(time.Hour), Launch: json.RawMessage(`{"type": "app_sdk"}`),
		Params: json.RawMessage(`{"channel": "app"}`), ParamsHash: "hash", ContractID: "wx-1", OpenID: "o-1",
		UserDisplayName: "Zhang San", ContractDisplayAccount: "acct", SignedAt: ts(time.Minute),
		TerminatedAt: ts(2 * time.Minute), TerminationMode: "USER", ExpiredAt: ts(3 * time.Minute),
		LastOperateTime: ts(4 * time.Minute), LastError: &domain.CallError{Code: "X", Message: "m", At: at, Op: "presign"},
		LeaseToken: "lease", LeaseExpiresAt: ts(5 * time.Minute), OpsTermination: &domain.OpsTermination{Note: "n", RequestedAt: at},
		NextCheckAt: ts(6 * time.Minute), CheckCount: 3}
	if _, err := st.Create(ctx, full); err != nil {
		t.Fatal(err)
	}
	read := func(to pgx.RowToFunc[domain.Contract]) domain.Contract {
		t.Helper()
		rows, err := db.Pool.Query(ctx, `SELECT `+contractColumns+` FROM contracts`)
		if err != nil {
			t.Fatal(err)
		}
		c, err := pgx.CollectExactlyOneRow(rows, to)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	byName, byScan := read(pgx.RowToStructByName[domain.Contract]), read(scanContract)
	if !reflect.DeepEqual(byName, byScan) {
		t.Fatalf("scanContract read\n%+v\nmatching by name read\n%+v", byScan, byName)
	}
	v := reflect.ValueOf(byScan)
	for i := 0; i < v.NumField(); i++ {
		if f := v.Type().Field(i); f.IsExported() && v.Field(i).IsZero() {
			t.Errorf("field %s was not read (or not set by this test)", f.Name)
		}
	}
}

// scanContract keeps its scan plans with the connection: rows read on one
// connection after the first (a full row, a row of NULLs, the full one
// again) read exactly what matching by name reads.
func TestScanContractWithKeptPlansReadsNullsAndValues(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	st := New(db.Pool)
	plan := int64(123)
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	full := domain.Contract{OutContractCode: "kept-1", Product: domain.ProductPapay, Channel: domain.ChannelApp,
		PlanID: &plan, State: domain.StateSigned, Launch: json.RawMessage(`{"a": 1}`), SignedAt: &at,
		LastError: &domain.CallError{Code: "X", Message: "m", At: at, Op: "presign"}}
	sparse := domain.Contract{OutContractCode: "kept-2", Product: domain.ProductPapay, Channel: domain.ChannelApp, State: domain.StateCreated}
	for _, c := range []domain.Contract{full, sparse} {
		if _, err := st.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	read := func(code string, to pgx.RowToFunc[domain.Contract]) domain.Contract {
		t.Helper()
		rows, err := conn.Query(ctx, `SELECT `+contractColumns+` FROM contracts WHERE out_contract_code = $1`, code)
		if err != nil {
			t.Fatal(err)
		}
		c, err := pgx.CollectExactlyOneRow(rows, to)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for i, code := range []string{"kept-1", "kept-2", "kept-1", "kept-2"} {
		byScan, byName := read(code, scanContract), read(code, pgx.RowToStructByName[domain.Contract])
		if !reflect.DeepEqual(byName, byScan) {
			t.Fatalf("read %d (%s): scanContract read\n%+v\nmatching by name read\n%+v", i, code, byScan, byName)
		}
	}
	if _, ok := conn.Conn().PgConn().CustomData()[contractPlansKey].(*contractPlans); !ok {
		t.Fatal("the connection keeps no contract scan plans")
	}
}
