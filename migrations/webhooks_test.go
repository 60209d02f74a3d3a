package migrations_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
)

// 00007 on a history that already has rows gives each row the version its
// contract had once the row was recorded: the count of the contract's
// applied (not ignored) rows up to it, as domain.Contract.Apply counts,
// per contract even where two contracts' rows interleave; an ignored row
// carries the version before it. History stays append-only afterwards.
func TestWebhooksMigrationBackfillsContractVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, p, exec := migratedTo(t, 6)
	exec(`INSERT INTO contracts (out_contract_code, product, channel, state) VALUES ('a', 'papay', 'app', 'terminated'), ('b', 'papay', 'app', 'signed')`)
	row := func(code, to, event string, ignored bool) {
		t.Helper()
		exec(`INSERT INTO contract_events (contract_pk, sub_mchid, out_contract_code, to_state, event, source, ignored, occurred_at)
			SELECT id, '', out_contract_code, $2, $3, 'notification', $4, now() FROM contracts WHERE out_contract_code = $1`, code, to, event, ignored)
	}
	row("a", "session_issued", "issue_session", false)
	row("b", "session_issued", "issue_session", false)
	row("a", "signed", "sign", false)
	row("b", "signed", "sign", false)
	row("a", "terminated", "terminate", false)
	row("a", "signed", "sign", true)
	if _, err := p.UpTo(ctx, 7); err != nil {
		t.Fatalf("up to 7: %v", err)
	}
	rows, err := s.Pool.Query(ctx, `SELECT out_contract_code, event, ignored, contract_version FROM contract_events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var code, event string
		var ignored bool
		var version *int64
		if err := rows.Scan(&code, &event, &ignored, &version); err != nil {
			t.Fatal(err)
		}
		v := "NULL"
		if version != nil {
			v = fmt.Sprint(*version)
		}
		got = append(got, fmt.Sprintf("%s %s ignored=%v v%s", code, event, ignored, v))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"a issue_session ignored=false v1",
		"b issue_session ignored=false v1",
		"a sign ignored=false v2",
		"b sign ignored=false v2",
		"a terminate ignored=false v3",
		"a sign ignored=true v3",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("versions after 00007:\n%v\nwant\n%v", got, want)
	}
	if _, err := s.Pool.Exec(ctx, `UPDATE contract_events SET contract_version = 9`); err == nil {
		t.Error("history accepted an update after the migration")
	}
}
