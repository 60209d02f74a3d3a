package store

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/contractd/contractd/domain"
	"github.com/jackc/pgx/v5"
)

const historyColumns = `id, sub_mchid, out_contract_code, from_state, to_state, event, source,
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
func (s *Store) Feed(ctx context.Context, after string, limit int) ([]domain.HistoryEntry, string, error) {
	if limit <= 0 {
		limit = 100
	}
	if limit > domain.MaxListLimit {
		limit = domain.MaxListLimit
	}
	xid, id, err := decodeFeedCursor(after)
	if err != nil {
		return nil, "", err
	}
	var (
		out  []domain.HistoryEntry
		next string
	)
	b := &pgx.Batch{}
	b.Queue(`SELECT `+historyColumns+`, xid FROM contract_events
		WHERE (xid, id) > ($1, $2) AND xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
		ORDER BY xid, id LIMIT $3`, xid, id, limit).Query(func(rows pgx.Rows) error {
		var err error
		out, next, err = collectFeed(rows, after)
		return err
	})
	if err := s.heavyRead(ctx, b); err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// FeedTail returns the newest limit rows the feed serves now, in feed
// order, and the cursor that follows the last of them ("" when there is
// none, which follows the feed from its beginning): where a live view of
// the feed starts.
func (s *Store) FeedTail(ctx context.Context, limit int) ([]domain.HistoryEntry, string, error) {
	var (
		out  []domain.HistoryEntry
		next string
	)
	b := &pgx.Batch{}
	b.Queue(`SELECT * FROM (SELECT `+historyColumns+`, xid FROM contract_events
		WHERE xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
		ORDER BY xid DESC, id DESC LIMIT $1) tail ORDER BY xid, id`, limit).Query(func(rows pgx.Rows) error {
		var err error
		out, next, err = collectFeed(rows, "")
		return err
	})
	if err := s.heavyRead(ctx, b); err != nil {
		return nil, "", err
	}
	return out, next, nil
}

// feedRow is a history row with the id of the transaction that wrote it.
type feedRow struct {
	domain.HistoryEntry
	XID int64
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
		next = encodeFeedCursor(r.XID, r.ID)
	}
	return out, next, nil
}

func encodeFeedCursor(xid, id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("f1:" + strconv.FormatInt(xid, 10) + ":" + strconv.FormatInt(id, 10)))
}

// decodeFeedCursor reads a cursor of encodeFeedCursor; "" is the
// beginning, before every row.
func decodeFeedCursor(s string) (xid, id int64, err error) {
	if s == "" {
		return -1, 0, nil
	}
	bad := &domain.Error{Code: domain.CodeParamError, Message: "after is not a cursor this service issued",
		Fields: []domain.FieldError{{Field: "after", Reason: "must be a next_cursor this service issued"}}}
	raw, derr := base64.RawURLEncoding.DecodeString(s)
	parts := strings.Split(string(raw), ":")
	if derr != nil || len(parts) != 3 || parts[0] != "f1" {
		return 0, 0, bad
	}
	xid, e1 := strconv.ParseInt(parts[1], 10, 64)
	id, e2 := strconv.ParseInt(parts[2], 10, 64)
	if e1 != nil || e2 != nil || xid < 0 || id < 0 {
		return 0, 0, bad
	}
	return xid, id, nil
}
