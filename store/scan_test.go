package store

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/contractd/contractd/internal/pgtest"
	"github.com/jackc/pgx/v5"
)

// scanContract is the one way a contract row is read. contractColumns must
// name every column of the contracts table, and scanContract must read
// back every field of a contract stored with each one set: a column added
// to the table but not to contractColumns, or to contractColumns but not
// to scanContract, fails here.
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
		NextCheckAt: ts(6 * time.Minute), CheckCount: 3, HealDueAt: ts(7 * time.Minute)}
	if _, err := st.Create(ctx, full); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Pool.Query(ctx, `SELECT `+contractColumns+` FROM contracts`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectExactlyOneRow(rows, scanContract)
	if err != nil {
		t.Fatal(err)
	}
	v := reflect.ValueOf(got)
	for i := 0; i < v.NumField(); i++ {
		if f := v.Type().Field(i); f.IsExported() && v.Field(i).IsZero() {
			t.Errorf("field %s was not read (or not set by this test)", f.Name)
		}
	}
	// What was stored is what is read, the fields the store sets itself
	// aside. JSON compares times as instants written the same way.
	want := full
	want.ID, want.Version, want.CreatedAt, want.UpdatedAt = got.ID, got.Version, got.CreatedAt, got.UpdatedAt
	wantJSON, gotJSON := allFields(t, want), allFields(t, got)
	if wantJSON != gotJSON {
		t.Fatalf("scanContract read\n%s\nstored\n%s", gotJSON, wantJSON)
	}

	var table []string
	if err := db.Pool.QueryRow(ctx, `SELECT array_agg(column_name::text ORDER BY column_name) FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'contracts'`).Scan(&table); err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, c := range strings.Split(contractColumns, ",") {
		listed = append(listed, strings.TrimSpace(c))
	}
	sort.Strings(listed)
	if !slices.Equal(listed, table) {
		t.Fatalf("contractColumns %v, the table's columns %v", listed, table)
	}
}

// allFields renders every exported field of c, json:"-" ones included, in
// UTC.
func allFields(t *testing.T, c domain.Contract) string {
	t.Helper()
	v := reflect.ValueOf(c)
	m := map[string]any{}
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		val := v.Field(i).Interface()
		switch tv := val.(type) {
		case time.Time:
			val = tv.UTC()
		case *time.Time:
			if tv != nil {
				val = tv.UTC()
			}
		}
		m[f.Name] = val
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// scanContract keeps its scan plans with the connection: rows read on one
// connection after the first (a full row, a row of NULLs, the full one
// again) read exactly what was stored, NULLs as nil and values as values.
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
	stored := map[string]domain.Contract{}
	for _, c := range []domain.Contract{full, sparse} {
		saved, err := st.Create(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		stored[c.OutContractCode] = saved
	}
	if f := stored["kept-1"]; f.PlanID == nil || *f.PlanID != plan || f.SignedAt == nil || !f.SignedAt.Equal(at) ||
		f.LastError == nil || f.LastError.Code != "X" || string(f.Launch) != `{"a": 1}` {
		t.Fatalf("the full contract stored as %+v", f)
	}
	if sp := stored["kept-2"]; sp.PlanID != nil || sp.SignedAt != nil || sp.LastError != nil || sp.Launch != nil {
		t.Fatalf("the sparse contract stored as %+v, want its NULLs read as nil", sp)
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
		if got := read(code, scanContract); !reflect.DeepEqual(got, stored[code]) {
			t.Fatalf("read %d (%s): scanContract read\n%+v\nwant what was stored\n%+v", i, code, got, stored[code])
		}
	}
	if _, ok := conn.Conn().PgConn().CustomData()[contractPlansKey].(*contractPlans); !ok {
		t.Fatal("the connection keeps no contract scan plans")
	}
}
