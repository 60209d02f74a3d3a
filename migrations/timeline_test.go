package migrations_test

import (
	"context"
	"testing"
)

// 00006 on a history that already has rows: they become timeline 0 and
// each gets its own event id; rows written after it carry the writer's
// timeline (the first 8 hex digits of the current WAL file's name) and an
// event id of their own; history stays append-only; and the timeline the
// migration ran on is recorded, so that only a later one heals.
func TestTimelineMigrationBackfillsExistingHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, p, exec := migratedTo(t, 5)
	exec(`INSERT INTO contracts (out_contract_code, product, channel, state) VALUES ('m-1', 'papay', 'app', 'signed')`)
	for range 3 {
		exec(`INSERT INTO contract_events (contract_pk, sub_mchid, out_contract_code, to_state, event, source, occurred_at)
			SELECT id, '', 'm-1', 'signed', 'sign', 'notification', now() FROM contracts`)
	}
	if _, err := p.UpTo(ctx, 6); err != nil {
		t.Fatalf("up to 6: %v", err)
	}
	exec(`INSERT INTO contract_events (contract_pk, sub_mchid, out_contract_code, to_state, event, source, occurred_at)
		SELECT id, '', 'm-1', 'terminated', 'terminate', 'notification', now() FROM contracts`)

	var old, oldIDs, newTL, newWithID, wal int64
	if err := s.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE timeline = 0), count(DISTINCT event_id) FILTER (WHERE timeline = 0),
		max(timeline), count(*) FILTER (WHERE timeline > 0 AND event_id IS NOT NULL),
		('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::bigint
		FROM contract_events`).Scan(&old, &oldIDs, &newTL, &newWithID, &wal); err != nil {
		t.Fatal(err)
	}
	if old != 3 || oldIDs != 3 {
		t.Errorf("%d rows of timeline 0 with %d distinct event ids, want 3 and 3", old, oldIDs)
	}
	if newTL != wal || newTL < 1 || newWithID != 1 {
		t.Errorf("the new row: timeline %d (the server's %d), %d with an event id; want the server's timeline and 1", newTL, wal, newWithID)
	}
	if _, err := s.Pool.Exec(ctx, `UPDATE contract_events SET event_id = gen_random_uuid()`); err == nil {
		t.Error("history accepted an update after the migration")
	}
	if _, err := s.Pool.Exec(ctx, `INSERT INTO contract_events (contract_pk, sub_mchid, out_contract_code, to_state, event, source, occurred_at, event_id)
		SELECT c.id, '', 'm-1', 'signed', 'sign', 'notification', now(), e.event_id FROM contracts c, contract_events e LIMIT 1`); err == nil {
		t.Error("history accepted a second row with an existing event id")
	}
	var seen []int64
	rows, err := s.Pool.Query(ctx, `SELECT timeline FROM timelines`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var tl int64
		if err := rows.Scan(&tl); err != nil {
			t.Fatal(err)
		}
		seen = append(seen, tl)
	}
	if len(seen) != 1 || seen[0] != wal {
		t.Errorf("timelines recorded %v, want the server's [%d]", seen, wal)
	}
	// And down again: the columns, the table and the function go.
	if _, err := p.DownTo(ctx, 5); err != nil {
		t.Fatalf("down to 5: %v", err)
	}
	var cols int
	if err := s.Pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema()
		AND ((table_name = 'contract_events' AND column_name IN ('timeline', 'event_id')) OR (table_name = 'contracts' AND column_name = 'heal_due_at'))`).Scan(&cols); err != nil || cols != 0 {
		t.Errorf("%d of the migration's columns left after down (%v)", cols, err)
	}
}
