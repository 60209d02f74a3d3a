package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/jackc/pgx/v5"
)

// Webhook endpoints (migrations/00007, package delivery): the endpoints
// themselves, the leases that let one replica at a time deliver each, the
// feed ranges their batches hold, their attempts and operators' cursor
// moves. The domain decides every change to an endpoint
// (domain.Endpoint's methods); UpdateEndpoint and UpdateEndpointAsHolder
// persist what it decided.

// MaxLagEvents caps the count of an endpoint's lag in events: an endpoint
// further behind shows this many (counting further would scan the feed for
// every read of the endpoint).
const MaxLagEvents = 1_000_000

// PruneBatch is how many attempts one statement of PruneAttempts deletes.
const PruneBatch = 1000

// ErrNotHolder is in the chain of the error UpdateEndpointAsHolder answers
// when the caller's lease on the endpoint is gone (expired, taken by
// another replica, released) or the condition it set no longer holds: what
// it was doing must be dropped, never saved.
var ErrNotHolder = errors.New("store: the lease on the webhook endpoint is no longer held")

// endpointColumns lists webhook_endpoints' columns in the order
// scanEndpoint reads them.
const endpointColumns = `id::text, url, description, paused, created_at, updated_at, created_by, cursor,
	secret_sealed, previous_secret_sealed, previous_secret_until,
	COALESCE(delivery_id::text, ''), COALESCE(delivery_through, ''), COALESCE(delivery_count, 0), delivery_attempts, next_attempt_at,
	last_attempt_at, COALESCE(last_status, 0), COALESCE(last_error, ''), COALESCE(last_latency_ms, 0)`

func scanEndpoint(row pgx.CollectableRow) (domain.Endpoint, error) {
	var (
		e      domain.Endpoint
		lastAt *time.Time
		last   domain.AttemptSummary
	)
	err := row.Scan(&e.ID, &e.URL, &e.Description, &e.Paused, &e.CreatedAt, &e.UpdatedAt, &e.CreatedBy, &e.Cursor,
		&e.SecretSealed, &e.PreviousSecretSealed, &e.PreviousSecretUntil,
		&e.DeliveryID, &e.DeliveryThrough, &e.DeliveryCount, &e.DeliveryAttempts, &e.NextAttemptAt,
		&lastAt, &last.Status, &last.Error, &last.LatencyMS)
	if lastAt != nil {
		last.At = *lastAt
		e.LastAttempt = &last
	}
	return e, err
}

// nullString is s, or NULL when empty.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// writtenEndpointColumns are the columns the domain's decisions change.
var writtenEndpointColumns = []column[domain.Endpoint]{
	{"url", func(e *domain.Endpoint) any { return e.URL }},
	{"description", func(e *domain.Endpoint) any { return e.Description }},
	{"paused", func(e *domain.Endpoint) any { return e.Paused }},
	{"secret_sealed", func(e *domain.Endpoint) any { return e.SecretSealed }},
	{"previous_secret_sealed", func(e *domain.Endpoint) any { return e.PreviousSecretSealed }},
	{"previous_secret_until", func(e *domain.Endpoint) any { return e.PreviousSecretUntil }},
	{"cursor", func(e *domain.Endpoint) any { return e.Cursor }},
	{"delivery_id", func(e *domain.Endpoint) any { return nullString(e.DeliveryID) }},
	{"delivery_through", func(e *domain.Endpoint) any { return nullString(e.DeliveryThrough) }},
	{"delivery_count", func(e *domain.Endpoint) any {
		if e.DeliveryID == "" {
			return nil
		}
		return e.DeliveryCount
	}},
	{"delivery_attempts", func(e *domain.Endpoint) any { return e.DeliveryAttempts }},
	{"next_attempt_at", func(e *domain.Endpoint) any { return e.NextAttemptAt }},
}

// feedCursorSQL is encodeFeedCursor of the contract_events row aliased ce,
// written in SQL (TestCreateEndpointStartsAtTheFeedsTail holds the two
// equal): base64url without padding of "f2:timeline:xid:id:event_id".
const feedCursorSQL = `rtrim(translate(encode(convert_to('f2:' || ce.timeline || ':' || ce.xid || ':' || ce.id || ':' || ce.event_id::text, 'UTF8'), 'base64'), E'+/\n', '-_'), '=')`

// feedTailCursorSQL is the cursor GET /v1/events hands a reader that has
// read everything: that of the last row in feed order under the horizon,
// "" when there is none.
const feedTailCursorSQL = `COALESCE((SELECT ` + feedCursorSQL + ` FROM contract_events ce
	WHERE ` + feedHorizon + ` ORDER BY timeline DESC, xid DESC, id DESC LIMIT 1), '')`

// CreateEndpoint stores a new endpoint (its id chosen by the caller, since
// its sealed secret is bound to it) whose cursor is the feed's current
// tail, taken in the same statement: the cursor GET /v1/events hands a
// reader that has read everything, never a maximum over ids, so that rows
// behind a transaction still running are delivered when it commits. It
// returns the endpoint as stored, without its lag (EndpointLag adds it).
func (s *Store) CreateEndpoint(ctx context.Context, e domain.Endpoint) (domain.Endpoint, error) {
	if !isUUID(e.ID) {
		return domain.Endpoint{}, fmt.Errorf("store: endpoint id %q is not a uuid", e.ID)
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `INSERT INTO webhook_endpoints (id, url, description, paused, secret_sealed, cursor, created_by)
		VALUES ($1, $2, $3, $4, $5, `+feedTailCursorSQL+`, $6) RETURNING `+endpointColumns,
		e.ID, e.URL, e.Description, e.Paused, e.SecretSealed, e.CreatedBy)
	if err != nil {
		return domain.Endpoint{}, mapErr(err)
	}
	out, err := pgx.CollectExactlyOneRow(rows, scanEndpoint)
	return out, mapErr(err)
}

// endpointNotFound is the answer to an id no endpoint has.
func endpointNotFound(id string) error {
	return &domain.Error{Code: domain.CodeResourceNotFound, Message: "no webhook endpoint " + strconv.Quote(id)}
}

// GetEndpoint returns the endpoint with id, with its lag and last attempt.
// An unknown id, or one that is not a uuid, is NOT_FOUND.
func (s *Store) GetEndpoint(ctx context.Context, id string) (domain.Endpoint, error) {
	e, err := s.EndpointState(ctx, id)
	if err != nil {
		return e, err
	}
	return e, s.EndpointLag(ctx, &e)
}

// EndpointState returns the endpoint with id as stored, without its lag:
// what a delivery worker reads before each step. An unknown id is
// NOT_FOUND.
func (s *Store) EndpointState(ctx context.Context, id string) (domain.Endpoint, error) {
	if !isUUID(id) {
		return domain.Endpoint{}, endpointNotFound(id)
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints WHERE id = $1`, id)
	if err != nil {
		return domain.Endpoint{}, mapErr(err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, scanEndpoint)
	if errors.Is(err, pgx.ErrNoRows) {
		return domain.Endpoint{}, endpointNotFound(id)
	}
	return e, mapErr(err)
}

// ListEndpoints returns every endpoint, oldest first, each with its lag
// and last attempt.
func (s *Store) ListEndpoints(ctx context.Context) ([]domain.Endpoint, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT `+endpointColumns+` FROM webhook_endpoints ORDER BY created_at, id`)
	if err != nil {
		return nil, mapErr(err)
	}
	es, err := pgx.CollectRows(rows, scanEndpoint)
	if err != nil {
		return nil, mapErr(err)
	}
	ps := make([]*domain.Endpoint, len(es))
	for i := range es {
		ps[i] = &es[i]
	}
	return es, s.withLag(ctx, ps)
}

// lagSQL counts the rows after a position under the horizon (at most $4)
// and the age, on Postgres's clock, of the first of them.
const lagSQL = `SELECT
	(SELECT count(*) FROM (SELECT 1 FROM contract_events
		WHERE (timeline, xid, id) > ($1, $2, $3) AND ` + feedHorizon + ` LIMIT $4) n),
	COALESCE((SELECT extract(epoch FROM now() - recorded_at)::float8 FROM contract_events
		WHERE (timeline, xid, id) > ($1, $2, $3) AND ` + feedHorizon + `
		ORDER BY timeline, xid, id LIMIT 1), 0)`

// Lag returns how far behind the feed's tail the cursor is: the rows the
// feed serves after it (at most MaxLagEvents) and the age in seconds, on
// Postgres's clock, of the first of them (0 when there is none).
func (s *Store) Lag(ctx context.Context, cursor string) (events int64, seconds float64, err error) {
	e := domain.Endpoint{Cursor: cursor}
	err = s.EndpointLag(ctx, &e)
	return e.LagEvents, e.LagSeconds, err
}

// withLag fills in each endpoint's lag, in one round trip.
func (s *Store) withLag(ctx context.Context, es []*domain.Endpoint) error {
	if len(es) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, e := range es {
		pos, err := decodeFeedCursor(e.Cursor)
		if err != nil {
			return fmt.Errorf("store: endpoint %s holds cursor %q: %w", e.ID, e.Cursor, err)
		}
		b.Queue(lagSQL, pos.Timeline, pos.XID, pos.ID, MaxLagEvents).QueryRow(func(r pgx.Row) error {
			if err := r.Scan(&e.LagEvents, &e.LagSeconds); err != nil {
				return err
			}
			e.LagSeconds = max(0, e.LagSeconds)
			return nil
		})
	}
	return mapErr(s.pool.SendBatch(ctx, b).Close())
}

// UpdateEndpoint is the one way an operator changes a stored endpoint. In
// one transaction it locks the endpoint with id, hands it to fn (where the
// domain decides: Edit, Rotate, Replay) and writes the columns fn changed;
// when the cursor moved, the move is recorded with actor
// (webhook_cursor_moves). fn returning an error writes nothing. An unknown
// id is NOT_FOUND. It returns the endpoint as stored, without its lag
// (EndpointLag adds it).
func (s *Store) UpdateEndpoint(ctx context.Context, id, actor string, fn func(e *domain.Endpoint) error) (domain.Endpoint, error) {
	if !isUUID(id) {
		return domain.Endpoint{}, endpointNotFound(id)
	}
	return s.updateEndpoint(ctx, id, "", actor, false, fn)
}

// EndpointLag fills in e's lag (LagEvents, LagSeconds) from its cursor:
// for an endpoint an update returned, without reading its row again.
func (s *Store) EndpointLag(ctx context.Context, e *domain.Endpoint) error {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	return s.withLag(ctx, []*domain.Endpoint{e})
}

// ReplayEndpoint moves the endpoint's cursor to the feed cursor to for
// actor (domain.Endpoint.Replay: the batch in flight is dropped) and
// records the move, also one to where the cursor already is. It returns
// the endpoint as stored, without its lag, and where its cursor was.
func (s *Store) ReplayEndpoint(ctx context.Context, id, actor, to string) (e domain.Endpoint, from string, err error) {
	if !isUUID(id) {
		return domain.Endpoint{}, "", endpointNotFound(id)
	}
	if err := CheckFeedCursor(to); err != nil {
		return domain.Endpoint{}, "", err
	}
	e, err = s.updateEndpoint(ctx, id, "", actor, true, func(e *domain.Endpoint) error {
		from = e.Replay(to)
		return nil
	})
	return e, from, err
}

// UpdateEndpointAsHolder is UpdateEndpoint for the delivery worker that
// holds the endpoint's lease with token (Plan, Accept, Fail, and moving
// past a position a failover lost): the row is read only while the lease
// is the caller's and unexpired on Postgres's clock, and a moved cursor is
// written only where it still is the cursor fn was handed, under the same
// lease. A lease that is gone is ErrNotHolder (INVALID_STATE); a deleted
// endpoint NOT_FOUND. actor, when not empty, records a cursor move.
func (s *Store) UpdateEndpointAsHolder(ctx context.Context, id, token, actor string, fn func(e *domain.Endpoint) error) (domain.Endpoint, error) {
	if token == "" {
		return domain.Endpoint{}, errors.New("store: UpdateEndpointAsHolder without a lease token")
	}
	return s.updateEndpoint(ctx, id, token, actor, false, fn)
}

func notHolder(id string) error {
	return &domain.Error{Code: domain.CodeInvalidState, Message: "the lease on webhook endpoint " + id + " is no longer held", Err: ErrNotHolder}
}

// updateEndpoint is UpdateEndpoint and UpdateEndpointAsHolder: token ""
// for an operator. A cursor move is recorded for actor (when not empty)
// when the cursor changed, or always when recordMove is set.
func (s *Store) updateEndpoint(ctx context.Context, id, token, actor string, recordMove bool, fn func(e *domain.Endpoint) error) (domain.Endpoint, error) {
	var out domain.Endpoint
	err := s.InTx(ctx, func(tx *Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+endpointColumns+`, COALESCE(lease_token = $2 AND lease_expires_at > clock_timestamp(), false)
			FROM webhook_endpoints WHERE id = $1 FOR UPDATE`, id, nullString(token))
		if err != nil {
			return err
		}
		var held bool
		before, err := pgx.CollectExactlyOneRow(rows, func(row pgx.CollectableRow) (domain.Endpoint, error) {
			e, err := scanEndpoint(&extraColumn{row, &held})
			return e, err
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return endpointNotFound(id)
		}
		if err != nil {
			return err
		}
		if token != "" && !held {
			return notHolder(id)
		}
		e := before
		if err := fn(&e); err != nil {
			return err
		}
		sets, args := changedSets(writtenEndpointColumns, &before, &e, []any{id})
		moved := actor != "" && (recordMove || e.Cursor != before.Cursor)
		if len(sets) == 0 && !moved {
			out = e
			return nil
		}
		sets = append(sets, "updated_at = now()")
		where := "id = $1"
		if token != "" {
			args = append(args, token, before.Cursor)
			n := len(args)
			where += " AND lease_token = $" + strconv.Itoa(n-1) + " AND lease_expires_at > clock_timestamp() AND cursor = $" + strconv.Itoa(n)
		}
		b := &pgx.Batch{}
		b.Queue(`UPDATE webhook_endpoints SET `+strings.Join(sets, ", ")+`
			WHERE `+where+` RETURNING `+endpointColumns, args...)
		if moved {
			b.Queue(`INSERT INTO webhook_cursor_moves (endpoint_id, from_cursor, to_cursor, actor) VALUES ($1, $2, $3, $4)`,
				id, before.Cursor, e.Cursor, actor)
		}
		return tx.commitWith(ctx, b, func(br pgx.BatchResults) error {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			out, err = pgx.CollectExactlyOneRow(rows, scanEndpoint)
			if errors.Is(err, pgx.ErrNoRows) {
				return notHolder(id)
			}
			if err != nil || !moved {
				return err
			}
			_, err = br.Exec()
			return err
		})
	})
	return out, err
}

// extraColumn reads a row of endpointColumns and one more column into
// extra.
type extraColumn struct {
	pgx.CollectableRow
	extra any
}

func (r *extraColumn) Scan(dest ...any) error {
	return r.CollectableRow.Scan(append(dest, r.extra)...)
}

// DeleteEndpoint forgets the endpoint with id, its attempts and cursor
// moves. An unknown id is NOT_FOUND.
func (s *Store) DeleteEndpoint(ctx context.Context, id string) error {
	if !isUUID(id) {
		return endpointNotFound(id)
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	tag, err := s.pool.Exec(ctx, `DELETE FROM webhook_endpoints WHERE id = $1`, id)
	if err != nil {
		return mapErr(err)
	}
	if tag.RowsAffected() == 0 {
		return endpointNotFound(id)
	}
	return nil
}

// CursorMove is one move of an endpoint's cursor by an operator.
type CursorMove struct {
	From, To, Actor string
	At              time.Time
}

// CursorMoves returns the endpoint's recorded cursor moves, oldest first.
func (s *Store) CursorMoves(ctx context.Context, id string) ([]CursorMove, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT from_cursor, to_cursor, actor, moved_at FROM webhook_cursor_moves
		WHERE endpoint_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, mapErr(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (CursorMove, error) {
		var m CursorMove
		return m, r.Scan(&m.From, &m.To, &m.Actor, &m.At)
	})
	return out, mapErr(err)
}

// ClaimEndpoints takes the lease, with token for ttl on Postgres's clock,
// of up to limit endpoints that are not paused and whose lease is free or
// expired, skipping rows other transactions hold. It returns their ids.
func (s *Store) ClaimEndpoints(ctx context.Context, token string, ttl time.Duration, limit int) ([]string, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `UPDATE webhook_endpoints SET lease_token = $1, lease_expires_at = clock_timestamp() + $2::bigint * interval '1 microsecond'
		WHERE id IN (SELECT id FROM webhook_endpoints
			WHERE NOT paused AND (lease_token IS NULL OR lease_expires_at <= clock_timestamp())
			ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
		RETURNING id::text`, token, ttl.Microseconds(), limit)
	if err != nil {
		return nil, mapErr(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return ids, mapErr(err)
}

// RenewLeases extends, to ttl from now on Postgres's clock, every lease
// token holds that has not expired and whose endpoint is not paused, and
// returns the ids of those endpoints: a lease missing from the answer is
// no longer the caller's (expired, taken, deleted), or its endpoint was
// paused, whose lease is released here.
func (s *Store) RenewLeases(ctx context.Context, token string, ttl time.Duration) ([]string, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	b := &pgx.Batch{}
	var ids []string
	b.Queue(`UPDATE webhook_endpoints SET lease_token = NULL, lease_expires_at = NULL WHERE lease_token = $1 AND paused`, token)
	b.Queue(`UPDATE webhook_endpoints SET lease_expires_at = clock_timestamp() + $2::bigint * interval '1 microsecond'
		WHERE lease_token = $1 AND lease_expires_at > clock_timestamp() RETURNING id::text`, token, ttl.Microseconds()).
		Query(func(rows pgx.Rows) error {
			var err error
			ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, mapErr(err)
	}
	return ids, nil
}

// ReleaseLeases gives up every lease token holds (ids nil), or those of
// ids.
func (s *Store) ReleaseLeases(ctx context.Context, token string, ids []string) error {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	var err error
	if ids == nil {
		_, err = s.pool.Exec(ctx, `UPDATE webhook_endpoints SET lease_token = NULL, lease_expires_at = NULL WHERE lease_token = $1`, token)
	} else {
		_, err = s.pool.Exec(ctx, `UPDATE webhook_endpoints SET lease_token = NULL, lease_expires_at = NULL
			WHERE lease_token = $1 AND id::text = ANY($2)`, token, ids)
	}
	return mapErr(err)
}

// FeedRange returns the feed's rows in (after, through], in feed order, at
// most domain.MaxBatchEvents: the batch a delivery saved before its first
// attempt, read again for a retry. Every row of the range was under the
// horizon when the batch was planned, so the range holds the same rows on
// every read (but for rows a failover lost).
func (s *Store) FeedRange(ctx context.Context, after, through string) ([]domain.HistoryEntry, error) {
	from, err := decodeFeedCursor(after)
	if err != nil {
		return nil, err
	}
	to, err := decodeFeedCursor(through)
	if err != nil {
		return nil, err
	}
	var out []domain.HistoryEntry
	b := &pgx.Batch{}
	b.Queue(`SELECT `+historyColumns+`, timeline, xid FROM contract_events
		WHERE (timeline, xid, id) > ($1, $2, $3) AND (timeline, xid, id) <= ($4, $5, $6)
		ORDER BY timeline, xid, id LIMIT $7`, from.Timeline, from.XID, from.ID, to.Timeline, to.XID, to.ID, domain.MaxBatchEvents).
		Query(func(rows pgx.Rows) error {
			var err error
			out, _, err = collectFeed(rows, after)
			return err
		})
	if err := s.heavyRead(ctx, b); err != nil {
		return nil, err
	}
	return out, nil
}

// CheckFeedCursor reports whether cursor is a feed cursor this service
// issued ("" is the beginning): PARAM_ERROR naming field after otherwise.
func CheckFeedCursor(cursor string) error {
	_, err := decodeFeedCursor(cursor)
	return err
}

// CursorBefore returns the cursor just before the first row, in feed
// order, recorded at or after t, among the rows the feed serves: a reader
// following it receives every row recorded since t. When no such row is
// served yet it is the feed's tail (rows recorded later all follow it); ""
// when the first row of the feed is the one.
func (s *Store) CursorBefore(ctx context.Context, t time.Time) (string, error) {
	var cursor string
	b := &pgx.Batch{}
	b.Queue(`WITH first AS (
			SELECT timeline, xid, id FROM contract_events WHERE recorded_at >= $1 AND `+feedHorizon+`
			ORDER BY timeline, xid, id LIMIT 1)
		SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM first) THEN `+feedTailCursorSQL+`
			ELSE COALESCE((SELECT `+feedCursorSQL+` FROM contract_events ce, first f
				WHERE (ce.timeline, ce.xid, ce.id) < (f.timeline, f.xid, f.id)
				ORDER BY ce.timeline DESC, ce.xid DESC, ce.id DESC LIMIT 1), '') END`, t).
		QueryRow(func(r pgx.Row) error { return r.Scan(&cursor) })
	if err := s.heavyRead(ctx, b); err != nil {
		return "", err
	}
	return cursor, nil
}

// RecordAttempt keeps one attempt and makes it its endpoint's last, in one
// statement that writes nothing when the endpoint is gone (deleted while
// the attempt was in flight): kept is then false and the attempt is to be
// discarded. It returns the attempt's id.
func (s *Store) RecordAttempt(ctx context.Context, a domain.Attempt) (id int64, kept bool, err error) {
	if !isUUID(a.EndpointID) {
		return 0, false, nil
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	err = s.pool.QueryRow(ctx, `WITH e AS (
			UPDATE webhook_endpoints SET last_attempt_at = $3, last_status = $6, last_error = $8, last_latency_ms = $7
			WHERE id = $1 RETURNING id)
		INSERT INTO webhook_attempts (endpoint_id, delivery_id, kind, event_count, attempted_at, status, latency_ms, error, response)
		SELECT e.id, $2, $4, $5, $3, $6, $7, $8, $9 FROM e RETURNING id`,
		a.EndpointID, a.DeliveryID, a.At, a.Kind, a.EventCount, a.Status, a.LatencyMS, a.Error, a.Response).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, mapErr(err)
	}
	return id, true, nil
}

// attemptCursor is the opaque cursor of the attempt page after id.
func attemptCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("a1:" + strconv.FormatInt(id, 10)))
}

func decodeAttemptCursor(s string) (int64, error) {
	bad := &domain.Error{Code: domain.CodeParamError, Message: "cursor is not one this service issued",
		Fields: []domain.FieldError{{Field: "cursor", Reason: "must be a next_cursor this service issued"}}}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || !strings.HasPrefix(string(raw), "a1:") {
		return 0, bad
	}
	id, err := strconv.ParseInt(string(raw[3:]), 10, 64)
	if err != nil || id <= 0 {
		return 0, bad
	}
	return id, nil
}

// Attempts pages the endpoint's attempts, newest first: up to limit
// (domain.MaxListLimit at most, 50 when not positive) after the opaque
// cursor ("" for the newest), and the cursor of the next page ("" when
// this one is the last). An unknown endpoint is NOT_FOUND; a cursor this
// service did not issue PARAM_ERROR.
func (s *Store) Attempts(ctx context.Context, endpointID, cursor string, limit int) ([]domain.Attempt, string, error) {
	if limit <= 0 {
		limit = 50
	}
	limit = min(limit, domain.MaxListLimit)
	before := int64(1<<63 - 1)
	if cursor != "" {
		var err error
		if before, err = decodeAttemptCursor(cursor); err != nil {
			return nil, "", err
		}
	}
	if !isUUID(endpointID) {
		return nil, "", endpointNotFound(endpointID)
	}
	var (
		exists bool
		out    []domain.Attempt
	)
	b := &pgx.Batch{}
	b.Queue(`SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $1)`, endpointID).QueryRow(func(r pgx.Row) error { return r.Scan(&exists) })
	b.Queue(`SELECT id, endpoint_id::text, delivery_id::text, kind, event_count, attempted_at, status, latency_ms, error, response
		FROM webhook_attempts WHERE endpoint_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3`, endpointID, before, limit+1).
		Query(func(rows pgx.Rows) error {
			var err error
			out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (domain.Attempt, error) {
				var a domain.Attempt
				return a, r.Scan(&a.ID, &a.EndpointID, &a.DeliveryID, &a.Kind, &a.EventCount, &a.At, &a.Status, &a.LatencyMS, &a.Error, &a.Response)
			})
			return err
		})
	if err := s.heavyRead(ctx, b); err != nil {
		return nil, "", err
	}
	if !exists {
		return nil, "", endpointNotFound(endpointID)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		next = attemptCursor(out[limit-1].ID)
	}
	return out, next, nil
}

// PruneAttempts deletes the attempts made before olderThan, PruneBatch
// per statement (each its own transaction, so that no long one holds the
// feed's horizon back), and returns how many it deleted.
func (s *Store) PruneAttempts(ctx context.Context, olderThan time.Time) (int64, error) {
	var total int64
	for {
		bctx, cancel := s.bounded(ctx)
		tag, err := s.pool.Exec(bctx, `DELETE FROM webhook_attempts WHERE id IN (
			SELECT id FROM webhook_attempts WHERE attempted_at < $1 LIMIT $2)`, olderThan, PruneBatch)
		cancel()
		if err != nil {
			return total, mapErr(err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < PruneBatch {
			return total, nil
		}
	}
}
