package store

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/contractd/contractd/domain"
	"github.com/jackc/pgx/v5"
)

const historyColumns = `id, event_id::text AS event_id, COALESCE(contract_version, 0) AS contract_version, sub_mchid, out_contract_code, from_state, to_state, event, source,
	ignored, details, occurred_at, recorded_at`

func collectHistory(ctx context.Context, q querier, sql string, args ...any) ([]domain.HistoryEntry, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	hs, err := pgx.CollectRows(rows, pgx.RowToStructByName[domain.HistoryEntry])
	return hs, mapErr(err)
}

// History returns the history of the contract with key, oldest first. An
// unknown key is CONTRACT_NOT_EXIST.
func (s *Store) History(ctx context.Context, key domain.Key) ([]domain.HistoryEntry, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	c, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return collectHistory(ctx, s.pool, `SELECT `+historyColumns+` FROM contract_events
		WHERE contract_pk = $1 ORDER BY id`, c.ID)
}

// feedHorizon is the end of the part of the feed that can no longer be
// joined by a row sorting before it, as (timeline, xid): every row of an
// older timeline (all of them committed or gone for good), and the rows of
// the current timeline whose transaction is older than the oldest one still
// running. Both are initplans, so the index scan is bounded by them.
const feedHorizon = `(timeline, xid) < ((SELECT contractd_timeline()),
	(SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint))`

// Feed returns up to limit history rows of every contract that follow the
// opaque cursor after ("" for the beginning), and the cursor of the last row
// returned (after itself when there is none): what a downstream system
// follows.
//
// The feed must never skip a row: a reader that has moved past a position
// must not later find a row committed before it. Row ids cannot promise
// that by themselves (an id is drawn when the row is inserted, and a
// transaction that drew a smaller id may commit after one that drew a
// larger), and making every writer take one lock to serialise them is what
// limited every write path to one transaction at a time. Instead each row
// records the id of the transaction that wrote it (xid), the feed is ordered
// by (xid, id), and it serves only rows whose transaction is older than the
// oldest transaction still running when the feed is read (the snapshot's
// xmin). Any transaction that has yet to commit is at least that new, so
// every row it writes sorts after every row already served. The price: a
// row shows in the feed only once every transaction that began before its
// own has ended, so one long transaction anywhere in the cluster holds the
// feed back (it never reorders or loses it). The feed must be read on the
// primary, whose snapshot knows every running writer.
//
// A failover breaks the xid order: a standby promoted after its primary
// died may lack the primary's last transactions, and it hands out their
// transaction ids (and row ids) again, so new rows would sort below
// positions readers have already passed. Each row therefore also records
// the timeline of the server that wrote it (migrations/00006), which every
// promotion moves up, and the feed is ordered by (timeline, xid, id): every
// row written after a promotion sorts after every row written before it.
// The xmin horizon applies to the current timeline only; rows of older
// timelines are all committed (or gone). Rows written before timelines were
// recorded are timeline 0.
//
// A cursor also names its row's event_id. When that row no longer exists,
// the failover lost it (history is append-only): the answer has no rows,
// Lost says which position was lost, and Next resumes at the last row the
// database still holds before it (the beginning when there is none), so
// that the reader misses no row the database holds and can tell which of
// the rows it handled are gone. A cursor in the older f1 form (no timeline,
// no event id) is read as timeline 0 and cannot be found lost.
func (s *Store) Feed(ctx context.Context, after string, limit int) (domain.FeedPage, error) {
	if limit <= 0 {
		limit = 100
	}
	if limit > domain.MaxListLimit {
		limit = domain.MaxListLimit
	}
	pos, err := decodeFeedCursor(after)
	if err != nil {
		return domain.FeedPage{}, err
	}
	var (
		page  = domain.FeedPage{Next: after}
		found = true
	)
	b := &pgx.Batch{}
	if pos.EventID != "" {
		b.Queue(`SELECT EXISTS (SELECT 1 FROM contract_events WHERE event_id = $1::uuid)`, pos.EventID).
			QueryRow(func(r pgx.Row) error { return r.Scan(&found) })
	}
	b.Queue(`SELECT `+historyColumns+`, timeline, xid FROM contract_events
		WHERE (timeline, xid, id) > ($1, $2, $3) AND `+feedHorizon+`
		ORDER BY timeline, xid, id LIMIT $4`, pos.Timeline, pos.XID, pos.ID, limit).Query(func(rows pgx.Rows) error {
		var err error
		page.Items, page.Next, err = collectFeed(rows, after)
		return err
	})
	if err := s.heavyRead(ctx, b); err != nil {
		return domain.FeedPage{}, err
	}
	if found {
		return page, nil
	}
	// The cursor's row is gone. Rows read with it were read before the
	// row was found gone; what they were is dropped.
	lost := pos
	page = domain.FeedPage{Lost: &lost}
	b = &pgx.Batch{}
	b.Queue(`SELECT timeline, xid, id, event_id::text FROM contract_events
		WHERE (timeline, xid, id) < ($1, $2, $3) AND `+feedHorizon+`
		ORDER BY timeline DESC, xid DESC, id DESC LIMIT 1`, pos.Timeline, pos.XID, pos.ID).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var p domain.FeedPosition
			if err := rows.Scan(&p.Timeline, &p.XID, &p.ID, &p.EventID); err != nil {
				return err
			}
			page.Next = encodeFeedCursor(p)
		}
		return mapErr(rows.Err())
	})
	if err := s.heavyRead(ctx, b); err != nil {
		return domain.FeedPage{}, err
	}
	return page, nil
}

// FeedTail returns the newest limit rows the feed serves now, in feed
// order, and the cursor that follows the last of them ("" when there is
// none, which follows the feed from its beginning): where a live view of
// the feed starts. It orders and bounds rows as Feed does.
func (s *Store) FeedTail(ctx context.Context, limit int) ([]domain.HistoryEntry, string, error) {
	var (
		out  []domain.HistoryEntry
		next string
	)
	b := &pgx.Batch{}
	b.Queue(`SELECT * FROM (SELECT `+historyColumns+`, timeline, xid FROM contract_events
		WHERE `+feedHorizon+`
		ORDER BY timeline DESC, xid DESC, id DESC LIMIT $1) tail ORDER BY timeline, xid, id`, limit).Query(func(rows pgx.Rows) error {
		var err error
		out, next, err = collectFeed(rows, "")
		return err
	})
	if err := s.heavyRead(ctx, b); err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// feedRow is a history row with its place in the feed: the timeline and
// the id of the transaction that wrote it.
type feedRow struct {
	domain.HistoryEntry
	Timeline int64
	XID      int64
}

// collectFeed reads feed rows and the cursor after the last (after when
// there is none).
func collectFeed(rows pgx.Rows, after string) ([]domain.HistoryEntry, string, error) {
	fr, err := pgx.CollectRows(rows, pgx.RowToStructByName[feedRow])
	if err != nil {
		return nil, "", mapErr(err)
	}
	next := after
	out := make([]domain.HistoryEntry, len(fr))
	for i, r := range fr {
		out[i] = r.HistoryEntry
		next = encodeFeedCursor(domain.FeedPosition{Timeline: r.Timeline, XID: r.XID, ID: r.ID, EventID: r.EventID})
	}
	return out, next, nil
}

// encodeFeedCursor is the opaque cursor of a feed position: base64url of
// "f2:timeline:xid:id:event_id".
func encodeFeedCursor(p domain.FeedPosition) string {
	return base64.RawURLEncoding.EncodeToString([]byte("f2:" + strconv.FormatInt(p.Timeline, 10) + ":" +
		strconv.FormatInt(p.XID, 10) + ":" + strconv.FormatInt(p.ID, 10) + ":" + p.EventID))
}

// decodeFeedCursor reads a cursor of encodeFeedCursor, or one of the older
// form "f1:xid:id" (timeline 0, no event id), which readers may still
// hold; "" is the beginning, before every row. Anything else is
// PARAM_ERROR.
func decodeFeedCursor(s string) (domain.FeedPosition, error) {
	if s == "" {
		return domain.FeedPosition{Timeline: -1}, nil
	}
	bad := &domain.Error{Code: domain.CodeParamError, Message: "after is not a cursor this service issued",
		Fields: []domain.FieldError{{Field: "after", Reason: "must be a next_cursor this service issued"}}}
	raw, derr := base64.RawURLEncoding.DecodeString(s)
	if derr != nil {
		return domain.FeedPosition{}, bad
	}
	parts := strings.Split(string(raw), ":")
	var nums []string
	p := domain.FeedPosition{}
	switch {
	case len(parts) == 3 && parts[0] == "f1":
		nums = []string{"0", parts[1], parts[2]}
	case len(parts) == 5 && parts[0] == "f2" && isUUID(parts[4]):
		nums, p.EventID = parts[1:4], parts[4]
	default:
		return domain.FeedPosition{}, bad
	}
	var vals [3]int64
	for i, n := range nums {
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil || v < 0 {
			return domain.FeedPosition{}, bad
		}
		vals[i] = v
	}
	p.Timeline, p.XID, p.ID = vals[0], vals[1], vals[2]
	return p, nil
}

// isUUID reports whether s is a UUID as Postgres writes one: 8-4-4-4-12
// lower-case hex digits.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
				return false
			}
		}
	}
	return true
}
