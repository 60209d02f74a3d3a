package store

import (
	"context"
	"errors"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/jackc/pgx/v5"
)

// CountAuthAttempt is the token throttle's one atomic step for an attempt
// from address: a request presenting a bearer token, or a console sign-in.
// Its result is what t decides on (t.Refuses), so that attempts racing each
// other on any replica each get their own place in line: of any number of
// concurrent wrong tokens from one address, exactly t.Limit are let
// through to be refused as wrong, the rest are refused as too many.
//
// A wrong token (failed) is always counted: one INSERT ... ON CONFLICT DO
// UPDATE adds it to the address's window (a new window when the last one
// has passed) under the row's lock and returns the count with it. A right
// token is counted only when the address is already at the limit, by one
// UPDATE that waits for any attempt counting at that moment and takes the
// decision on the count it leaves; below the limit it writes nothing and
// its count is zero. Either way, once an address is throttled a right and a
// wrong token cost the same one row update, so that neither the answer nor
// its timing tells them apart.
func (s *Store) CountAuthAttempt(ctx context.Context, address string, failed bool, t domain.AuthThrottle) (domain.AuthCount, error) {
	var c domain.AuthCount
	var err error
	if failed {
		err = s.pool.QueryRow(ctx, `INSERT INTO auth_failures AS f (address, window_start, failures) VALUES ($1, now(), 1)
			ON CONFLICT (address) DO UPDATE SET
				window_start = CASE WHEN f.window_start > now() - $2::interval THEN f.window_start ELSE now() END,
				failures     = CASE WHEN f.window_start > now() - $2::interval THEN f.failures + 1 ELSE 1 END
			RETURNING failures, window_start`, address, t.Window).Scan(&c.Failures, &c.WindowStart)
	} else {
		err = s.pool.QueryRow(ctx, `UPDATE auth_failures SET failures = failures + 1
			WHERE address = $1 AND window_start > now() - $2::interval AND failures >= $3
			RETURNING failures, window_start`, address, t.Window, t.Limit).Scan(&c.Failures, &c.WindowStart)
		if errors.Is(err, pgx.ErrNoRows) {
			return domain.AuthCount{}, nil
		}
	}
	if err != nil {
		return domain.AuthCount{}, mapErr(err)
	}
	return c, nil
}

// ForgetAuthFailures deletes up to 100 addresses whose window has passed,
// the oldest first, skipping rows another attempt holds. The throttle calls
// it after counting a failure, so the table stays the size of the addresses
// that failed within one window.
func (s *Store) ForgetAuthFailures(ctx context.Context, window time.Duration) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM auth_failures WHERE address IN (
		SELECT address FROM auth_failures WHERE window_start <= now() - $1::interval
		ORDER BY window_start LIMIT 100 FOR UPDATE SKIP LOCKED)`, window)
	return mapErr(err)
}
