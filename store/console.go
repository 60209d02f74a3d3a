package store

import (
	"context"
	"errors"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/jackc/pgx/v5"
)

// ConsoleSession is a signed-in operations console session.
type ConsoleSession struct {
	Actor     string
	CSRFToken string
	// TokenMAC binds the session to the ops token that opened it (see
	// package console); empty for sessions older than the binding.
	TokenMAC  []byte
	CreatedAt time.Time
	ExpiresAt time.Time
}

// CreateConsoleSession stores a console session under the hash of its
// cookie id, and drops sessions that lapsed more than a day ago.
func (s *Store) CreateConsoleSession(ctx context.Context, idHash string, sess ConsoleSession) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM console_sessions WHERE expires_at < now() - interval '1 day'`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO console_sessions (id_hash, actor, csrf_token, token_mac, expires_at)
			VALUES ($1, $2, $3, $4, $5)`, idHash, sess.Actor, sess.CSRFToken, sess.TokenMAC, sess.ExpiresAt)
		return err
	})
}

// ConsoleSession returns the live session stored under idHash; an unknown
// or lapsed one is UNAUTHORIZED.
func (s *Store) ConsoleSession(ctx context.Context, idHash string) (ConsoleSession, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	var sess ConsoleSession
	err := s.pool.QueryRow(ctx, `SELECT actor, csrf_token, token_mac, created_at, expires_at FROM console_sessions
		WHERE id_hash = $1 AND expires_at > now()`, idHash).Scan(&sess.Actor, &sess.CSRFToken, &sess.TokenMAC, &sess.CreatedAt, &sess.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return sess, &domain.Error{Code: domain.CodeUnauthorized, Message: "no such console session", Err: err}
	}
	return sess, mapErr(err)
}

// DeleteConsoleSession ends the session stored under idHash, on every
// replica at once.
func (s *Store) DeleteConsoleSession(ctx context.Context, idHash string) error {
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM console_sessions WHERE id_hash = $1`, idHash)
	return s.sendBounded(ctx, b)
}

// Search finds up to limit contracts whose out_contract_code (in any
// sub-merchant), contract_id or openid is exactly q.
func (s *Store) Search(ctx context.Context, q string, limit int) ([]domain.Contract, error) {
	var cs []domain.Contract
	b := &pgx.Batch{}
	b.Queue(`SELECT `+contractColumns+` FROM contracts
		WHERE out_contract_code = $1
		   OR (contract_id = $1 AND contract_id <> '')
		   OR (openid = $1 AND openid <> '')
		ORDER BY created_at, id LIMIT $2`, q, limit).Query(func(rows pgx.Rows) error {
		var err error
		cs, err = appendContracts([]domain.Contract{}, rows)
		return err
	})
	err := s.heavyRead(ctx, b)
	return cs, err
}

// NotificationRecord is one notification WeChat sent about a contract, as
// the inbox keeps it.
type NotificationRecord struct {
	NotificationID string
	EventType      string
	Outcome        string
	DeliveryCount  int
	ReceivedAt     time.Time
	LastReceivedAt time.Time
}

// Notifications returns every notification received for the contract with
// key, first received first.
func (s *Store) Notifications(ctx context.Context, key domain.Key) ([]NotificationRecord, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT notification_id, event_type, outcome, delivery_count, received_at, last_received_at
		FROM wechat_notifications WHERE sub_mchid = $1 AND out_contract_code = $2 ORDER BY received_at, id`,
		key.SubMchID, key.OutContractCode)
	if err != nil {
		return nil, mapErr(err)
	}
	ns, err := pgx.CollectRows(rows, pgx.RowToStructByPos[NotificationRecord])
	return ns, mapErr(err)
}

// Overview is the console's summary of the whole service.
type Overview struct {
	// ByState counts contracts in each state.
	ByState map[domain.State]int64
	// The signing funnel over [From, To): contracts created (pre-signs),
	// sessions issued, signs and expiries recorded.
	From, To                            time.Time
	PreSigns, Sessions, Signed, Expired int64
	// Notifications counts the notifications first received in the period
	// by outcome.
	Notifications map[string]int64
	// Rejected counts the period's rejected notifications (verified, but
	// breaking a field rule) by reason, the most frequent first (at most
	// ten reasons).
	Rejected []ReasonCount
	// ReconcileBacklog counts contracts whose reconciliation check is due;
	// OldestDue is the longest-waiting one (nil when none is).
	ReconcileBacklog int64
	OldestDue        *DueContract
	// Failing counts contracts whose last WeChat call failed; Recent lists
	// the most recently changed of them.
	Failing int64
	Recent  []domain.Contract
	// At is when the figures were read.
	At time.Time
}

// ReasonCount is how many rejected notifications gave one reason.
type ReasonCount struct {
	Reason string
	Count  int64
}

// DueContract names a contract waiting for reconciliation and since when.
type DueContract struct {
	Key   domain.Key
	DueAt time.Time
}

// OverviewOptions choose the overview's period and the reconciliation
// rule its backlog follows (see ClaimReconcileDue).
type OverviewOptions struct {
	From, To          time.Time
	ReconcileMinAge   time.Duration
	ReconcileLookBack time.Duration
	RecentErrors      int
}

// Overview reads the overview's figures in one round trip, as a heavy read
// (see List), each statement bounded by the statement timeout, on the
// view's pool: the figures are as old as the standby's replication lag. Each query
// follows an index: counts by state the state index (index-only), the
// funnel the events' (event, occurred_at) index and the created_at index,
// the backlog the partial reconcile and expired_at indexes, the failing list the partial
// last_error index.
func (s *Reads) Overview(ctx context.Context, o OverviewOptions) (Overview, error) {
	ov := Overview{ByState: map[domain.State]int64{}, Notifications: map[string]int64{}, From: o.From, To: o.To}
	b := &pgx.Batch{}
	b.Queue(`SELECT now()`).QueryRow(func(r pgx.Row) error { return r.Scan(&ov.At) })
	b.Queue(`SELECT state, count(*) FROM contracts GROUP BY state`).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var st domain.State
			var n int64
			if err := rows.Scan(&st, &n); err != nil {
				return err
			}
			ov.ByState[st] = n
		}
		return rows.Err()
	})
	b.Queue(`SELECT count(*) FROM contracts WHERE created_at >= $1 AND created_at < $2`, o.From, o.To).
		QueryRow(func(r pgx.Row) error { return r.Scan(&ov.PreSigns) })
	b.Queue(`SELECT
		count(*) FILTER (WHERE event = 'issue_session'),
		count(*) FILTER (WHERE event = 'sign' AND NOT ignored),
		count(*) FILTER (WHERE event = 'expire')
		FROM contract_events WHERE event IN ('issue_session', 'sign', 'expire') AND occurred_at >= $1 AND occurred_at < $2`, o.From, o.To).
		QueryRow(func(r pgx.Row) error { return r.Scan(&ov.Sessions, &ov.Signed, &ov.Expired) })
	b.Queue(`SELECT outcome, count(*) FROM wechat_notifications WHERE received_at >= $1 AND received_at < $2 GROUP BY outcome`, o.From, o.To).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var k string
				var n int64
				if err := rows.Scan(&k, &n); err != nil {
					return err
				}
				ov.Notifications[k] = n
			}
			return rows.Err()
		})
	b.Queue(`SELECT reason, count(*) FROM wechat_notifications
		WHERE outcome = 'rejected' AND received_at >= $1 AND received_at < $2
		GROUP BY reason ORDER BY count(*) DESC, reason LIMIT 10`, o.From, o.To).
		Query(func(rows pgx.Rows) error {
			var err error
			ov.Rejected, err = pgx.CollectRows(rows, pgx.RowToStructByPos[ReasonCount])
			return err
		})
	// Reconciliation's rule (reconcileDueSQL), split so that each half
	// follows its partial index: open sessions by (state, next_check_at),
	// recently expired ones by expired_at.
	const dueOpen = `state = 'session_issued' AND COALESCE(next_check_at, updated_at + $1::interval) <= now()`
	const dueExpired = `state = 'expired' AND expired_at > now() - $2::interval AND COALESCE(next_check_at, updated_at + $1::interval) <= now()`
	b.Queue(`SELECT (SELECT count(*) FROM contracts WHERE `+dueOpen+`) + (SELECT count(*) FROM contracts WHERE `+dueExpired+`)`,
		o.ReconcileMinAge, o.ReconcileLookBack).
		QueryRow(func(r pgx.Row) error { return r.Scan(&ov.ReconcileBacklog) })
	b.Queue(`SELECT sub_mchid, out_contract_code, due FROM (
		(SELECT sub_mchid, out_contract_code, COALESCE(next_check_at, updated_at + $1::interval) AS due FROM contracts WHERE `+dueOpen+` ORDER BY 3 LIMIT 1)
		UNION ALL
		(SELECT sub_mchid, out_contract_code, COALESCE(next_check_at, updated_at + $1::interval) AS due FROM contracts WHERE `+dueExpired+` ORDER BY 3 LIMIT 1)
		) d ORDER BY due LIMIT 1`, o.ReconcileMinAge, o.ReconcileLookBack).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				d := DueContract{}
				if err := rows.Scan(&d.Key.SubMchID, &d.Key.OutContractCode, &d.DueAt); err != nil {
					return err
				}
				ov.OldestDue = &d
			}
			return rows.Err()
		})
	b.Queue(`SELECT count(*) FROM contracts WHERE last_error IS NOT NULL`).
		QueryRow(func(r pgx.Row) error { return r.Scan(&ov.Failing) })
	b.Queue(`SELECT `+contractColumns+` FROM contracts WHERE last_error IS NOT NULL ORDER BY updated_at DESC LIMIT $1`, max(o.RecentErrors, 1)).
		Query(func(rows pgx.Rows) error {
			cs, err := appendContracts([]domain.Contract{}, rows)
			ov.Recent = cs
			return err
		})
	if err := s.heavyRead(ctx, b); err != nil {
		return ov, err
	}
	return ov, nil
}
