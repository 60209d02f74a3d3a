package drill

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// contractRow is what the drill reads of a contract on the leader.
type contractRow struct {
	state string
	// signedByNotification: a sign row of source notification exists.
	signedByNotification bool
	// reconcileSignAt: when a sign row of source reconcile was recorded
	// (zero when none).
	reconcileSignAt time.Time
}

// connectLeader connects directly (HAProxy's read-write port) to a server
// that is not in recovery.
func connectLeader(ctx context.Context, url string) (*pgx.Conn, error) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	var rec bool
	if err := conn.QueryRow(cctx, `SELECT pg_is_in_recovery()`).Scan(&rec); err != nil || rec {
		conn.Close(context.Background())
		if err == nil {
			err = fmt.Errorf("the server is in recovery")
		}
		return nil, fmt.Errorf("leader: %w", err)
	}
	return conn, nil
}

// contractsLike reads every contract whose code starts with prefix.
func contractsLike(ctx context.Context, url, prefix string) (map[string]contractRow, error) {
	conn, err := connectLeader(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rows, err := conn.Query(qctx, `SELECT c.out_contract_code, c.state,
		EXISTS (SELECT 1 FROM contract_events e WHERE e.contract_pk = c.id AND e.event = 'sign' AND e.source = 'notification'),
		COALESCE((SELECT min(e.recorded_at) FROM contract_events e WHERE e.contract_pk = c.id AND e.event = 'sign' AND e.source = 'reconcile'), 'epoch')
		FROM contracts c WHERE c.out_contract_code LIKE $1`, prefix+"%")
	if err != nil {
		return nil, fmt.Errorf("read contracts: %w", err)
	}
	out := map[string]contractRow{}
	for rows.Next() {
		var code string
		var r contractRow
		if err := rows.Scan(&code, &r.state, &r.signedByNotification, &r.reconcileSignAt); err != nil {
			return nil, fmt.Errorf("read contracts: %w", err)
		}
		if r.reconcileSignAt.Unix() == 0 {
			r.reconcileSignAt = time.Time{}
		}
		out[code] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read contracts: %w", err)
	}
	return out, nil
}

// statesOf reads the state of each of codes (absent: no such contract).
func statesOf(ctx context.Context, conn *pgx.Conn, codes []string) (map[string]string, error) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return pairs(qctx, conn, "read states", `SELECT out_contract_code, state FROM contracts WHERE out_contract_code = ANY($1)`, codes)
}

// eventsLike reads the event_id and code of every history row whose code
// starts with prefix.
func eventsLike(ctx context.Context, url, prefix string) (map[string]string, error) {
	conn, err := connectLeader(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return pairs(qctx, conn, "read history", `SELECT event_id::text, out_contract_code FROM contract_events WHERE out_contract_code LIKE $1`, prefix+"%")
}

// pairs runs sql, whose rows are two strings, and maps the first to the
// second; what names the read in its error.
func pairs(ctx context.Context, conn *pgx.Conn, what, sql string, args ...any) (map[string]string, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out[k] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
