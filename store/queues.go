package store

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/jackc/pgx/v5"
)

// DueSessionsSQL selects, and locks, open sessions whose expiry has passed.
// SKIP LOCKED lets any number of sweepers share the work without waiting on
// each other; the predicate matches the partial index
// contracts_session_expiry, so the cost follows the number of due rows and
// not the size of the table.
const DueSessionsSQL = `SELECT ` + contractColumns + ` FROM contracts
	WHERE state = 'session_issued' AND session_expires_at <= $1
	ORDER BY session_expires_at
	LIMIT $2
	FOR UPDATE SKIP LOCKED`

// reconcileDueSQL selects contracts whose fate WeChat may know and we may
// have missed: open sessions issued at least $2 ago, and sessions that expired
// within $3, whose next check is due.
const reconcileDueSQL = `SELECT ` + contractColumns + ` FROM contracts
	WHERE state IN ('session_issued', 'expired')
	  AND COALESCE(next_check_at, updated_at + $2::interval) <= $1
	  AND (state = 'session_issued' OR expired_at > $1 - $3::interval)
	ORDER BY COALESCE(next_check_at, updated_at)
	LIMIT $4
	FOR UPDATE SKIP LOCKED`

// ClaimReconcileDue locks up to limit contracts due for a reconciliation
// check at now (open sessions at least minAge old, sessions expired within
// lookBack, whose next check is due), hands each to schedule and persists
// them all in one transaction, as UpdateDueSessions does. schedule is the
// domain's domain.Contract.ScheduleCheck, which pushes the next check out
// with a doubling back-off, so that one contract is asked about a bounded
// number of times and replicas never ask about the same one at once.
func (s *Store) ClaimReconcileDue(ctx context.Context, now time.Time, minAge, lookBack time.Duration, limit int, schedule func(c *domain.Contract) error) ([]Persisted, error) {
	return s.updateClaimed(ctx, schedule, reconcileDueSQL, now, minAge, lookBack, limit)
}

// Notification is one verified WeChat notification for the inbox.
type Notification struct {
	NotificationID  string
	EventType       string
	SubMchID        string
	OutContractCode string
	CreateTime      time.Time
	Resource        json.RawMessage
}

// Received is what taking one notification left in the store.
type Received struct {
	// Persisted is what was persisted for the contract: nothing (the zero
	// value) for a repeated delivery.
	Persisted
	// First says whether this was the first delivery of the notification's
	// id; a repeated one applies nothing.
	First bool
	// Outcome is what apply answered, as recorded on the inbox row ("" for
	// a repeated delivery).
	Outcome string
}

// ReceiveNotification takes one verified notification in ONE transaction:
// it records n in the inbox and, on the first delivery of its id, hands the
// contract it is about (fresh, when we never stored it) to apply, persists
// what the domain decided as UpdateOrCreate does, and records apply's
// outcome on the inbox row. A repeated delivery only counts (First false)
// and applies nothing. Concurrent deliveries of one id queue on the inbox
// row before any of them touches the contract. An error writes nothing.
func (s *Store) ReceiveNotification(ctx context.Context, n Notification, fresh domain.Contract, apply func(c *domain.Contract) (outcome string, err error)) (Received, error) {
	var out Received
	fn := func(c *domain.Contract) error {
		var err error
		out.Outcome, err = apply(c)
		return err
	}
	key := fresh.Key()
	err := s.inTx(ctx, &key, func(tx *Tx) error {
		// One round trip records the delivery and locks the contract. A
		// repeated delivery takes the lock for nothing, and only until
		// this short transaction commits.
		var b pgx.Batch
		queueNotification(&b, n)
		b.Queue(lockSQL, fresh.SubMchID, fresh.OutContractCode)
		br := tx.SendBatch(ctx, &b)
		if err := br.QueryRow().Scan(&out.First); err != nil {
			_ = br.Close()
			return mapErr(err)
		}
		rows, err := br.Query()
		var c domain.Contract
		if err == nil {
			c, err = pgx.CollectExactlyOneRow(rows, scanContract)
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		tx.locked()
		found := err == nil
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return mapErr(err)
		}
		if !out.First {
			return nil
		}
		if !found {
			// Never stored (or stored by a transaction that committed after
			// our snapshot): create it, or update the one that beat us.
			if out.Persisted, err = tx.updateOrCreate(ctx, fresh, fn); err != nil {
				return err
			}
			return tx.exec(ctx, setOutcomeSQL, n.NotificationID, out.Outcome)
		}
		// Found and locked: the same door as Update, with the inbox
		// outcome in the contract's round trip.
		tx.commitLast = true
		out.Persisted, err = tx.change(ctx, c, fn, func(*domain.Contract) []statement {
			return []statement{{setOutcomeSQL, []any{n.NotificationID, out.Outcome}}}
		})
		return err
	})
	if err != nil {
		return Received{First: out.First}, err
	}
	return out, nil
}

const setOutcomeSQL = `UPDATE wechat_notifications SET outcome = $2 WHERE notification_id = $1`

func (tx *Tx) exec(ctx context.Context, sql string, args ...any) error {
	_, err := tx.Exec(ctx, sql, args...)
	return mapErr(err)
}

// RejectNotification keeps a verified notification that can never apply
// in the inbox with outcome 'rejected', reason, and n.Resource exactly as
// received in raw_resource: the decrypted resource, or the body when its
// envelope could not be read (resource holds JSON null: the plaintext may
// not be storable as jsonb). n's SubMchID and OutContractCode are stored only as
// given, so a caller passes them empty when they are the broken fields. A
// repeated delivery of the same id only counts (first false). No contract
// is touched.
func (s *Store) RejectNotification(ctx context.Context, n Notification, reason string) (first bool, err error) {
	b := &pgx.Batch{}
	b.Queue(inboxSQL, inboxArgs(n, "rejected", json.RawMessage("null"), &reason, []byte(n.Resource))...).
		QueryRow(func(r pgx.Row) error { return r.Scan(&first) })
	err = s.sendBounded(ctx, b)
	return first, err
}

// queueNotification queues the inbox insert of n, which answers whether
// this is the first delivery of its id. A repeated one only counts its
// delivery; concurrent deliveries of one id wait for the first one's
// transaction.
func queueNotification(b *pgx.Batch, n Notification) {
	b.Queue(inboxSQL, inboxArgs(n, "received", n.Resource, nil, nil)...)
}

// inboxSQL records one delivery in the inbox: the first of its id inserts
// the row, a repeated one counts; it answers whether this was the first.
const inboxSQL = `INSERT INTO wechat_notifications (notification_id, event_type, sub_mchid,
	out_contract_code, create_time, resource, outcome, reason, raw_resource)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
	ON CONFLICT (notification_id) DO UPDATE
	SET delivery_count = wechat_notifications.delivery_count + 1, last_received_at = now()
	RETURNING xmax = 0`

func inboxArgs(n Notification, outcome string, resource json.RawMessage, reason *string, raw []byte) []any {
	var ct *time.Time
	if !n.CreateTime.IsZero() {
		ct = &n.CreateTime
	}
	return []any{n.NotificationID, n.EventType, n.SubMchID, n.OutContractCode, ct, resource, outcome, reason, raw}
}
