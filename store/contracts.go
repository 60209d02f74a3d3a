package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/jackc/pgx/v5"
)

// contractColumns lists the contracts table's columns in the order of
// domain.Contract's fields; pgx.RowToStructByName matches them by name.
const contractColumns = `id, sub_mchid, out_contract_code, product, channel, plan_id, service_id,
	state, version, session_id, session_expires_at, launch, params, params_hash, contract_id,
	openid, user_display_name, contract_display_account, signed_at, terminated_at,
	termination_mode, expired_at, last_operate_time, last_error, claim_token, claim_expires_at,
	ops_termination, next_check_at, check_count, created_at, updated_at`

// querier is what both the pool and a transaction offer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func collectContracts(ctx context.Context, q querier, sql string, args ...any) ([]domain.Contract, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	cs, err := pgx.CollectRows(rows, pgx.RowToStructByName[domain.Contract])
	return cs, mapErr(err)
}

func oneContract(ctx context.Context, q querier, sql string, args ...any) (domain.Contract, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return domain.Contract{}, mapErr(err)
	}
	c, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[domain.Contract])
	return c, mapErr(err)
}

// Get returns the contract with key.
func (s *Store) Get(ctx context.Context, key domain.Key) (domain.Contract, error) {
	return oneContract(ctx, s.pool, `SELECT `+contractColumns+` FROM contracts
		WHERE sub_mchid = $1 AND out_contract_code = $2`, key.SubMchID, key.OutContractCode)
}

// GetByContractID returns the contract WeChat knows by contractID.
func (s *Store) GetByContractID(ctx context.Context, contractID string) (domain.Contract, error) {
	return oneContract(ctx, s.pool, `SELECT `+contractColumns+` FROM contracts WHERE contract_id = $1 AND contract_id <> ''`, contractID)
}

// Create stores a new contract and returns it as stored, with the history
// rows the domain decided for it. A contract with the same key already
// there is CONTRACT_EXISTED.
func (s *Store) Create(ctx context.Context, c domain.Contract) (domain.Contract, error) {
	var out domain.Contract
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		out, err = tx.create(ctx, c)
		return err
	})
	return out, err
}

// Update is the one way a stored contract changes. In one transaction it
// locks the contract with key, hands it to fn, and persists what fn decided:
// the contract's fields when fn changed any, and every history row the
// domain recorded (domain.Contract.Pending), or nothing at all when fn
// returns an error. fn is where the domain rules; it must do no I/O of its
// own and may be called more than once. The contract as stored is returned.
func (s *Store) Update(ctx context.Context, key domain.Key, fn func(c *domain.Contract) error) (domain.Contract, error) {
	var out domain.Contract
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		out, err = tx.update(ctx, key, fn)
		return err
	})
	return out, err
}

// UpdateOrCreate is Update for a contract that may not be stored yet: when
// no contract has fresh's key, fresh is handed to fn instead and stored
// afterwards with its history. Concurrent callers with one key are
// serialised by Postgres: exactly one stores its contract, the others wait
// for its commit and then lock and update that one.
func (s *Store) UpdateOrCreate(ctx context.Context, fresh domain.Contract, fn func(c *domain.Contract) error) (domain.Contract, error) {
	var out domain.Contract
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		out, err = tx.updateOrCreate(ctx, fresh, fn)
		return err
	})
	return out, err
}

// UpdateDueSessions locks up to limit open sessions whose expiry passed by
// now, skipping rows other transactions hold, hands each to fn and persists
// them all in one transaction. It returns how many it locked. SKIP LOCKED
// lets any number of sweepers share the work without waiting on each
// other; the predicate matches the partial index contracts_session_expiry,
// so the cost follows the number of due rows and not the size of the table.
func (s *Store) UpdateDueSessions(ctx context.Context, now time.Time, limit int, fn func(c *domain.Contract) error) (int, error) {
	n := 0
	err := s.InTx(ctx, func(tx *Tx) error {
		due, err := collectContracts(ctx, tx.tx, DueSessionsSQL, now, limit)
		if err != nil {
			return err
		}
		n = len(due)
		for _, c := range due {
			readVersion := c.Version
			if err := fn(&c); err != nil {
				return err
			}
			if _, err := tx.persist(ctx, c, readVersion); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// lock reads the contract with key and holds its row lock until the
// transaction ends.
func (tx *Tx) lock(ctx context.Context, key domain.Key) (domain.Contract, error) {
	return oneContract(ctx, tx.tx, `SELECT `+contractColumns+` FROM contracts
		WHERE sub_mchid = $1 AND out_contract_code = $2 FOR UPDATE`, key.SubMchID, key.OutContractCode)
}

func (tx *Tx) update(ctx context.Context, key domain.Key, fn func(c *domain.Contract) error) (domain.Contract, error) {
	c, err := tx.lock(ctx, key)
	if err != nil {
		return c, err
	}
	readVersion := c.Version
	if err := fn(&c); err != nil {
		return c, err
	}
	return tx.persist(ctx, c, readVersion)
}

func (tx *Tx) updateOrCreate(ctx context.Context, fresh domain.Contract, fn func(c *domain.Contract) error) (domain.Contract, error) {
	for attempt := 0; ; attempt++ {
		out, err := tx.update(ctx, fresh.Key(), fn)
		if !domain.IsCode(err, domain.CodeNotFound) {
			return out, err
		}
		c := fresh
		if err := fn(&c); err != nil {
			return c, err
		}
		out, err = tx.create(ctx, c)
		if domain.IsCode(err, domain.CodeExists) && attempt == 0 {
			// Another transaction stored the key since we looked: lock
			// and update its contract instead.
			continue
		}
		return out, err
	}
}

// create stores a new contract and the history rows decided for it.
func (tx *Tx) create(ctx context.Context, c domain.Contract) (domain.Contract, error) {
	saved, err := tx.insert(ctx, c)
	if err != nil {
		return saved, err
	}
	for _, r := range c.Pending() {
		if err := tx.insertEvent(ctx, &saved, r); err != nil {
			return saved, err
		}
	}
	return saved, nil
}

// insert stores a new contract. It is CONTRACT_EXISTED when the key (or
// WeChat's contract id) is taken.
func (tx *Tx) insert(ctx context.Context, c domain.Contract) (domain.Contract, error) {
	if c.Version == 0 {
		c.Version = 1
	}
	out, err := oneContract(ctx, tx.tx, `INSERT INTO contracts (sub_mchid, out_contract_code, product, channel,
		plan_id, service_id, state, version, session_id, session_expires_at, launch, params, params_hash,
		contract_id, openid, user_display_name, contract_display_account, signed_at, terminated_at,
		termination_mode, expired_at, last_operate_time, last_error, claim_token, claim_expires_at,
		next_check_at, check_count, ops_termination)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23,$24,$25,$26,$27,$28)
		ON CONFLICT DO NOTHING
		RETURNING `+contractColumns,
		c.SubMchID, c.OutContractCode, c.Product, c.Channel, c.PlanID, c.ServiceID, c.State, c.Version,
		c.SessionID, c.SessionExpiresAt, nullJSON(c.Launch), nullJSON(c.Params), c.ParamsHash, c.ContractID,
		c.OpenID, c.UserDisplayName, c.ContractDisplayAccount, c.SignedAt, c.TerminatedAt,
		c.TerminationMode, c.ExpiredAt, c.LastOperateTime, c.LastError, c.LeaseToken, c.LeaseExpiresAt,
		c.NextCheckAt, c.CheckCount, c.OpsTermination)
	if domain.IsCode(err, domain.CodeNotFound) {
		// ON CONFLICT DO NOTHING returned no row: the key (or contract id) is taken.
		return out, &domain.Error{Code: domain.CodeExists, Message: "contract " + c.Key().String() + " already exists"}
	}
	return out, err
}

// persist writes what the domain decided for c, a contract locked in this
// transaction at readVersion: its fields when any changed, then its pending
// history rows.
func (tx *Tx) persist(ctx context.Context, c domain.Contract, readVersion int64) (domain.Contract, error) {
	saved := c
	if c.Dirty() {
		var err error
		if saved, err = tx.save(ctx, c, readVersion); err != nil {
			return c, err
		}
	}
	for _, r := range c.Pending() {
		if err := tx.insertEvent(ctx, &saved, r); err != nil {
			return c, err
		}
	}
	return saved, nil
}

// save writes every mutable field of a contract read in this transaction.
// The version it was read at must still be current.
func (tx *Tx) save(ctx context.Context, c domain.Contract, readVersion int64) (domain.Contract, error) {
	saved, err := oneContract(ctx, tx.tx, `UPDATE contracts SET product=$3, channel=$4, plan_id=$5,
		service_id=$6, state=$7, version=$8, session_id=$9, session_expires_at=$10, launch=$11, params=$12,
		params_hash=$13, contract_id=$14, openid=$15, user_display_name=$16, contract_display_account=$17,
		signed_at=$18, terminated_at=$19, termination_mode=$20, expired_at=$21, last_operate_time=$22,
		last_error=$23, claim_token=$24, claim_expires_at=$25, next_check_at=$26, check_count=$27, ops_termination=$28, updated_at=now()
		WHERE id=$1 AND version=$2 RETURNING `+contractColumns,
		c.ID, readVersion, c.Product, c.Channel, c.PlanID, c.ServiceID, c.State, c.Version, c.SessionID,
		c.SessionExpiresAt, nullJSON(c.Launch), nullJSON(c.Params), c.ParamsHash, c.ContractID, c.OpenID,
		c.UserDisplayName, c.ContractDisplayAccount, c.SignedAt, c.TerminatedAt, c.TerminationMode,
		c.ExpiredAt, c.LastOperateTime, c.LastError, c.LeaseToken, c.LeaseExpiresAt, c.NextCheckAt, c.CheckCount,
		c.OpsTermination)
	if domain.IsCode(err, domain.CodeNotFound) {
		// Not the caller's "no such contract": the row was read under a
		// lock in this transaction, so this is a bug, reported as internal.
		return c, fmt.Errorf("store: contract %s was not at version %d under its own lock", c.Key(), readVersion)
	}
	return saved, err
}

func (tx *Tx) insertEvent(ctx context.Context, c *domain.Contract, r domain.Record) error {
	// History ids double as the feed's cursor, so they must become visible
	// in id order: a reader that has seen id n must never later find a
	// smaller one committed. Taking this transaction-scoped lock right
	// before the insert makes every history-writing transaction assign its
	// ids and commit one after another. It is taken last, after every row
	// lock the transaction needs, so it cannot close a lock cycle.
	if _, err := tx.tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, feedLockKey); err != nil {
		return mapErr(err)
	}
	d, ch := r.Decision, r.Change
	_, err := tx.tx.Exec(ctx, `INSERT INTO contract_events (contract_pk, sub_mchid, out_contract_code,
		from_state, to_state, event, source, ignored, details, occurred_at)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)`,
		c.ID, c.SubMchID, c.OutContractCode, d.From, d.To, ch.Event, ch.Source,
		d.Outcome == domain.OutcomeIgnore, ch.Details, ch.OccurredAt)
	return mapErr(err)
}

// feedLockKey is the advisory lock that orders history inserts.
const feedLockKey int64 = 0x636f6e7472616374 // "contract"

func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// List returns one page of contracts, oldest first by (created_at, id), and
// the opaque cursor of the next page ("" on the last page).
func (s *Store) List(ctx context.Context, f domain.ListFilter) ([]domain.Contract, string, error) {
	var (
		conds []string
		args  []any
	)
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if f.State != "" {
		add("state = $%d", f.State)
	}
	if f.Channel != "" {
		add("channel = $%d", f.Channel)
	}
	if f.PlanID != nil {
		add("plan_id = $%d", *f.PlanID)
	}
	if f.ServiceID != nil {
		add("service_id = $%d", *f.ServiceID)
	}
	if f.SubMchID != nil {
		add("sub_mchid = $%d", *f.SubMchID)
	}
	if f.CreatedFrom != nil {
		add("created_at >= $%d", *f.CreatedFrom)
	}
	if f.CreatedTo != nil {
		add("created_at < $%d", *f.CreatedTo)
	}
	if f.Cursor != "" {
		at, id, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		args = append(args, at, id)
		conds = append(conds, fmt.Sprintf("(created_at, id) > ($%d, $%d)", len(args)-1, len(args)))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = domain.DefaultListLimit
	}
	limit = min(limit, domain.MaxListLimit)
	where := ""
	if len(conds) > 0 {
		where = "WHERE " + strings.Join(conds, " AND ")
	}
	args = append(args, limit+1)
	cs, err := collectContracts(ctx, s.pool, fmt.Sprintf(`SELECT %s FROM contracts %s
		ORDER BY created_at, id LIMIT $%d`, contractColumns, where, len(args)), args...)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(cs) > limit {
		cs = cs[:limit]
		last := cs[limit-1]
		next = encodeCursor(last.CreatedAt, last.ID)
	}
	return cs, next, nil
}

func encodeCursor(at time.Time, id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(at.UTC().Format(time.RFC3339Nano) + "|" + strconv.FormatInt(id, 10)))
}

func decodeCursor(s string) (time.Time, int64, error) {
	bad := &domain.Error{Code: domain.CodeParamError, Message: "cursor is not one this service issued",
		Fields: []domain.FieldError{{Field: "cursor", Reason: "is not a cursor this service issued"}}}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return time.Time{}, 0, bad
	}
	at, idText, ok := strings.Cut(string(raw), "|")
	if !ok {
		return time.Time{}, 0, bad
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return time.Time{}, 0, bad
	}
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil {
		return time.Time{}, 0, bad
	}
	return t, id, nil
}
