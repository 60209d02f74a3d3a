package store

import (
	"context"

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
	c, err := s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return collectHistory(ctx, s.pool, `SELECT `+historyColumns+` FROM contract_events
		WHERE contract_pk = $1 ORDER BY id`, c.ID)
}

// Feed returns up to limit history rows of every contract with ids after
// after, in id order: a cursor a downstream system can follow.
func (s *Store) Feed(ctx context.Context, after int64, limit int) ([]domain.HistoryEntry, error) {
	if limit <= 0 {
		limit = 100
	}
	if limit > domain.MaxListLimit {
		limit = domain.MaxListLimit
	}
	return collectHistory(ctx, s.pool, `SELECT `+historyColumns+` FROM contract_events
		WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
}
