package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// contractColumns lists the contracts table's columns in the order
// scanContract reads them.
const contractColumns = `id, sub_mchid, out_contract_code, product, channel, plan_id, service_id,
	state, version, session_id, session_expires_at, launch, params, params_hash, contract_id,
	openid, user_display_name, contract_display_account, signed_at, terminated_at,
	termination_mode, expired_at, last_operate_time, last_error, claim_token, claim_expires_at,
	ops_termination, next_check_at, check_count, heal_due_at, created_at, updated_at`

// scanContract reads one row of contractColumns. It names every field
// rather than letting pgx match columns to fields by reflection on every
// row (pgx.RowToStructByName), which cost about a fifth of a single
// contract read's CPU; TestScanContractReadsEveryColumn keeps the two lists
// in step.
//
// A row is scanned with the connection's own scan plans for these columns,
// planned once per connection and kept with it (pgx plans every column of
// every query again: about half of a read's allocations).
func scanContract(row pgx.CollectableRow) (domain.Contract, error) {
	var c domain.Contract
	err := scanContractInto(row, &c)
	return c, err
}

// contractFields is how many columns contractColumns names.
const contractFields = 32

// contractDest points dest at c's fields, in contractColumns' order.
func contractDest(c *domain.Contract, dest *[contractFields]any) {
	*dest = [contractFields]any{&c.ID, &c.SubMchID, &c.OutContractCode, &c.Product, &c.Channel, &c.PlanID, &c.ServiceID,
		&c.State, &c.Version, &c.SessionID, &c.SessionExpiresAt, &c.Launch, &c.Params, &c.ParamsHash, &c.ContractID,
		&c.OpenID, &c.UserDisplayName, &c.ContractDisplayAccount, &c.SignedAt, &c.TerminatedAt,
		&c.TerminationMode, &c.ExpiredAt, &c.LastOperateTime, &c.LastError, &c.LeaseToken, &c.LeaseExpiresAt,
		&c.OpsTermination, &c.NextCheckAt, &c.CheckCount, &c.HealDueAt, &c.CreatedAt, &c.UpdatedAt}
}

// scanContractInto scans a row of contractColumns into c, with the scan
// plans and the destination array its connection keeps (a read by key
// then allocates only the row's own values).
func scanContractInto(row pgx.CollectableRow, c *domain.Contract) error {
	withConn, ok := row.(interface{ Conn() *pgx.Conn })
	fields, raw := row.FieldDescriptions(), row.RawValues()
	if !ok || withConn.Conn() == nil || len(fields) != contractFields || len(raw) != contractFields {
		var dest [contractFields]any
		contractDest(c, &dest)
		return row.Scan(dest[:]...)
	}
	plans := contractPlansOf(withConn.Conn(), fields, c)
	contractDest(c, &plans.dest)
	defer clear(plans.dest[:]) // holds no contract past its scan
	for i, d := range plans.dest {
		if err := plans.plans[i].Scan(raw[i], d); err != nil {
			return pgx.ScanArgError{ColumnIndex: i, FieldName: fields[i].Name, Err: err}
		}
	}
	return nil
}

// contractPlans are one connection's scan plans for a row of
// contractColumns, valid for the column types and formats they were
// planned for, and the destinations its scans reuse.
type contractPlans struct {
	oids    []uint32
	formats []int16
	plans   []pgtype.ScanPlan
	dest    [contractFields]any
}

// contractPlansKey keys a connection's contractPlans in its CustomData.
const contractPlansKey = "contractd.store.contractPlans"

// contractPlansOf returns conn's plans for fields, planning them the first
// time (or again should the columns' types or formats differ) for c's
// fields. A connection is used by one goroutine at a time, and so are its
// plans.
func contractPlansOf(conn *pgx.Conn, fields []pgconn.FieldDescription, c *domain.Contract) *contractPlans {
	data := conn.PgConn().CustomData()
	p, _ := data[contractPlansKey].(*contractPlans)
	if p != nil && len(p.plans) == len(fields) {
		same := true
		for i, f := range fields {
			if f.DataTypeOID != p.oids[i] || f.Format != p.formats[i] {
				same = false
				break
			}
		}
		if same {
			return p
		}
	}
	p = &contractPlans{oids: make([]uint32, len(fields)), formats: make([]int16, len(fields)), plans: make([]pgtype.ScanPlan, len(fields))}
	var dest [contractFields]any
	contractDest(c, &dest)
	for i, f := range fields {
		p.oids[i], p.formats[i] = f.DataTypeOID, f.Format
		p.plans[i] = conn.TypeMap().PlanScan(f.DataTypeOID, f.Format, dest[i])
	}
	data[contractPlansKey] = p
	return p
}

// appendContracts appends the contracts of rows (of contractColumns) to cs,
// each scanned in place, and closes rows.
func appendContracts(cs []domain.Contract, rows pgx.Rows) ([]domain.Contract, error) {
	defer rows.Close()
	for rows.Next() {
		cs = append(cs, domain.Contract{})
		if err := scanContractInto(rows, &cs[len(cs)-1]); err != nil {
			return cs, err
		}
	}
	return cs, rows.Err()
}

// querier is what both the pool and a transaction offer.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func collectContracts(ctx context.Context, q querier, sql string, args ...any) ([]domain.Contract, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	cs, err := appendContracts([]domain.Contract{}, rows)
	return cs, mapErr(err)
}

func oneContract(ctx context.Context, q querier, sql string, args ...any) (domain.Contract, error) {
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return domain.Contract{}, mapErr(err)
	}
	c, err := pgx.CollectExactlyOneRow(rows, scanContract)
	return c, mapErr(err)
}

// Get returns the contract with key.
// Concurrent Gets are coalesced into fewer queries under load (keyReads).
// Each query is bounded by the statement timeout, so a read waits at most
// for the query in flight when it arrived and then its own, or until ctx
// ends: no timer of its own.
func (s *Store) Get(ctx context.Context, key domain.Key) (domain.Contract, error) {
	return s.byKey.get(ctx, key, s.sendKeyReads)
}

// GetByContractID returns the contract WeChat knows by contractID.
func (s *Store) GetByContractID(ctx context.Context, contractID string) (domain.Contract, error) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	return oneContract(ctx, s.pool, `SELECT `+contractColumns+` FROM contracts WHERE contract_id = $1 AND contract_id <> ''`, contractID)
}

// Create stores a new contract and returns it as stored, with the history
// rows the domain decided for it. A contract with the same key already
// there is CONTRACT_EXISTED.
func (s *Store) Create(ctx context.Context, c domain.Contract) (domain.Contract, error) {
	var out Persisted
	err := s.InTx(ctx, func(tx *Tx) error {
		var err error
		out, err = tx.create(ctx, c)
		return err
	})
	return out.Contract, err
}

// Persisted is what one update of a contract left in the store: the
// contract as stored and what the domain decided on the way. A caller reads
// the domain's verdict here rather than from variables its function
// captures.
type Persisted struct {
	// Contract is the contract as stored after the update.
	Contract domain.Contract
	// Decided is every decision the domain took, repeats included, in the
	// order it took them (domain.Contract.Decided).
	Decided []domain.Record
	// History is the history rows written: Decided without the repeats
	// (domain.Contract.Pending).
	History []domain.Record
}

// Last returns the last decision the domain took (the zero Decision when
// it took none).
func (p Persisted) Last() domain.Decision {
	if len(p.Decided) == 0 {
		return domain.Decision{}
	}
	return p.Decided[len(p.Decided)-1].Decision
}

// persisted is what persisting c, as the domain left it, came to once
// stored as saved.
func persisted(c, saved domain.Contract) Persisted {
	return Persisted{Contract: saved, Decided: c.Decided(), History: c.Pending()}
}

// Update is the one way a stored contract changes. In one transaction it
// locks the contract with key, hands it to fn, and persists what fn decided:
// the contract's fields when fn changed any, and every history row the
// domain recorded (domain.Contract.Pending), or nothing at all when fn
// returns an error. fn is where the domain rules; it must do no I/O of its
// own and may be called more than once. What was persisted is returned:
// the contract as stored and the domain's decisions.
func (s *Store) Update(ctx context.Context, key domain.Key, fn func(c *domain.Contract) error) (Persisted, error) {
	return s.updateIn(ctx, &key, key, fn)
}

// UpdateAsLeaseHolder is Update for the holder of the contract's lease
// (renewing it, recording its outcome). It does not queue behind this
// process's other callers of the contract (see rowGate): those wait for the
// holder anyway, and the lease makes it the only such caller, so it cannot
// pile up. It still waits at most the lock timeout for the row.
func (s *Store) UpdateAsLeaseHolder(ctx context.Context, key domain.Key, fn func(c *domain.Contract) error) (Persisted, error) {
	return s.updateIn(ctx, nil, key, fn)
}

// updateIn runs tx.update for key in one transaction that commits with its
// writes, taking gate's turn in the row gate first when gate is not nil.
func (s *Store) updateIn(ctx context.Context, gate *domain.Key, key domain.Key, fn func(c *domain.Contract) error) (Persisted, error) {
	var out Persisted
	err := s.inTx(ctx, gate, func(tx *Tx) error {
		tx.commitLast = true
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
//
// The insert is tried first (fn decides on fresh, and the insert does
// nothing when the key is taken): a first pre-sign, the usual caller, then
// costs no lookup that finds nothing. A key that is taken falls back to
// locking the stored contract and deciding again.
func (s *Store) UpdateOrCreate(ctx context.Context, fresh domain.Contract, fn func(c *domain.Contract) error) (Persisted, error) {
	var out Persisted
	err := s.InTx(ctx, func(tx *Tx) error {
		// Whichever write batch succeeds is the last thing sent.
		tx.commitLast = true
		c := fresh
		if err := fn(&c); err == nil {
			var err error
			if out, err = tx.create(ctx, c); !domain.IsCode(err, domain.CodeExists) {
				return err
			}
		}
		var err error
		out, err = tx.updateOrCreate(ctx, fresh, fn)
		return err
	})
	return out, err
}

// UpdateDueSessions locks up to limit open sessions whose expiry passed by
// now, skipping rows other transactions hold, hands each to fn and persists
// them all in one transaction. It returns what it persisted for each
// contract it locked, in the order it locked them. SKIP LOCKED lets any
// number of sweepers share the work without waiting on each other; the
// predicate matches the partial index contracts_session_expiry, so the
// cost follows the number of due rows and not the size of the table.
func (s *Store) UpdateDueSessions(ctx context.Context, now time.Time, limit int, fn func(c *domain.Contract) error) ([]Persisted, error) {
	return s.updateClaimed(ctx, fn, DueSessionsSQL, now, limit)
}

// updateClaimed locks the contracts sql selects (FOR UPDATE SKIP LOCKED),
// hands each to fn and persists them all in one transaction. Every
// contract's writes go in one batch with the COMMIT: one round trip for
// the whole claim, so its row locks are held for as short as can be.
func (s *Store) updateClaimed(ctx context.Context, fn func(c *domain.Contract) error, sql string, args ...any) ([]Persisted, error) {
	var out []Persisted
	err := s.InTx(ctx, func(tx *Tx) error {
		claimed, err := collectContracts(ctx, tx, sql, args...)
		if err != nil {
			return err
		}
		out = make([]Persisted, len(claimed))
		var b pgx.Batch
		reads := make([]func(pgx.BatchResults) (domain.Contract, error), 0, len(claimed))
		for i, c := range claimed {
			before := c
			if err := fn(&c); err != nil {
				return err
			}
			out[i] = persisted(c, c)
			reads = append(reads, queuePersist(&b, before, c))
		}
		if b.Len() == 0 {
			return nil
		}
		return tx.commitWith(ctx, &b, func(br pgx.BatchResults) error {
			for i, read := range reads {
				saved, err := read(br)
				if err != nil {
					return err
				}
				out[i].Contract = saved
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// lock reads the contract with key and holds its row lock until the
// transaction ends.
func (tx *Tx) lock(ctx context.Context, key domain.Key) (domain.Contract, error) {
	defer tx.locked()
	return oneContract(ctx, tx, lockSQL, key.SubMchID, key.OutContractCode)
}

const lockSQL = `SELECT ` + contractColumns + ` FROM contracts
	WHERE sub_mchid = $1 AND out_contract_code = $2 FOR UPDATE`

func (tx *Tx) update(ctx context.Context, key domain.Key, fn func(c *domain.Contract) error) (Persisted, error) {
	c, err := tx.lock(ctx, key)
	if err != nil {
		return Persisted{Contract: c}, err
	}
	return tx.change(ctx, c, fn, nil)
}

// change hands c, locked in this transaction, to fn and persists what fn
// decided, with the statements after returns for c as fn left it (nil for
// none) in the same round trip. Every update of a stored contract ends
// here.
func (tx *Tx) change(ctx context.Context, c domain.Contract, fn func(c *domain.Contract) error, after func(c *domain.Contract) []statement) (Persisted, error) {
	before := c
	if err := fn(&c); err != nil {
		return Persisted{Contract: c}, err
	}
	var extra []statement
	if after != nil {
		extra = after(&c)
	}
	saved, err := tx.persist(ctx, before, c, extra...)
	return persisted(c, saved), err
}

func (tx *Tx) updateOrCreate(ctx context.Context, fresh domain.Contract, fn func(c *domain.Contract) error) (Persisted, error) {
	for attempt := 0; ; attempt++ {
		out, err := tx.update(ctx, fresh.Key(), fn)
		if !domain.IsCode(err, domain.CodeNotFound) {
			return out, err
		}
		c := fresh
		if err := fn(&c); err != nil {
			return Persisted{Contract: c}, err
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
func (tx *Tx) create(ctx context.Context, c domain.Contract) (Persisted, error) {
	saved, err := tx.insert(ctx, c)
	if err != nil || len(c.Pending()) == 0 {
		return persisted(c, saved), err
	}
	var b pgx.Batch
	for _, r := range c.Pending() {
		queueEvent(&b, &saved, r)
	}
	// Each history row's result is read before COMMIT's, which commitWith
	// reads after them.
	n := b.Len()
	return persisted(c, saved), tx.sendWrites(ctx, &b, func(br pgx.BatchResults) error {
		for range n {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		return nil
	})
}

// column is one stored field of a T (a contract, a webhook endpoint) that
// the store writes: its name and how to read its value.
type column[T any] struct {
	name  string
	value func(v *T) any
}

// changedSets appends to args the value of every column whose value
// differs between before and after, and returns the SET clauses that
// write them ("name = $n", numbered after the args already there).
func changedSets[T any](cols []column[T], before, after *T, args []any) ([]string, []any) {
	var sets []string
	for _, col := range cols {
		if v := col.value(after); !reflect.DeepEqual(v, col.value(before)) {
			args = append(args, v)
			sets = append(sets, col.name+" = $"+strconv.Itoa(len(args)))
		}
	}
	return sets, args
}

// writtenColumns are the contract's columns the store writes, in one list
// for both the insert and the update, so that they cannot drift apart.
var writtenColumns = []column[domain.Contract]{
	{"product", func(c *domain.Contract) any { return c.Product }},
	{"channel", func(c *domain.Contract) any { return c.Channel }},
	{"plan_id", func(c *domain.Contract) any { return c.PlanID }},
	{"service_id", func(c *domain.Contract) any { return c.ServiceID }},
	{"state", func(c *domain.Contract) any { return c.State }},
	{"version", func(c *domain.Contract) any { return c.Version }},
	{"session_id", func(c *domain.Contract) any { return c.SessionID }},
	{"session_expires_at", func(c *domain.Contract) any { return c.SessionExpiresAt }},
	{"launch", func(c *domain.Contract) any { return nullJSON(c.Launch) }},
	{"params", func(c *domain.Contract) any { return nullJSON(c.Params) }},
	{"params_hash", func(c *domain.Contract) any { return c.ParamsHash }},
	{"contract_id", func(c *domain.Contract) any { return c.ContractID }},
	{"openid", func(c *domain.Contract) any { return c.OpenID }},
	{"user_display_name", func(c *domain.Contract) any { return c.UserDisplayName }},
	{"contract_display_account", func(c *domain.Contract) any { return c.ContractDisplayAccount }},
	{"signed_at", func(c *domain.Contract) any { return c.SignedAt }},
	{"terminated_at", func(c *domain.Contract) any { return c.TerminatedAt }},
	{"termination_mode", func(c *domain.Contract) any { return c.TerminationMode }},
	{"expired_at", func(c *domain.Contract) any { return c.ExpiredAt }},
	{"last_operate_time", func(c *domain.Contract) any { return c.LastOperateTime }},
	{"last_error", func(c *domain.Contract) any { return c.LastError }},
	{"claim_token", func(c *domain.Contract) any { return c.LeaseToken }},
	{"claim_expires_at", func(c *domain.Contract) any { return c.LeaseExpiresAt }},
	{"ops_termination", func(c *domain.Contract) any { return c.OpsTermination }},
	{"next_check_at", func(c *domain.Contract) any { return c.NextCheckAt }},
	{"check_count", func(c *domain.Contract) any { return c.CheckCount }},
	{"heal_due_at", func(c *domain.Contract) any { return c.HealDueAt }},
}

// insert stores a new contract. It is CONTRACT_EXISTED when the key (or
// WeChat's contract id) is taken.
func (tx *Tx) insert(ctx context.Context, c domain.Contract) (domain.Contract, error) {
	if c.Version == 0 {
		c.Version = 1
	}
	names := []string{"sub_mchid", "out_contract_code"}
	args := []any{c.SubMchID, c.OutContractCode}
	marks := []string{"$1", "$2"}
	for _, col := range writtenColumns {
		names = append(names, col.name)
		args = append(args, col.value(&c))
		marks = append(marks, "$"+strconv.Itoa(len(args)))
	}
	out, err := oneContract(ctx, tx, `INSERT INTO contracts (`+strings.Join(names, ", ")+`)
		VALUES (`+strings.Join(marks, ",")+`) ON CONFLICT DO NOTHING RETURNING `+contractColumns, args...)
	if domain.IsCode(err, domain.CodeNotFound) {
		// ON CONFLICT DO NOTHING returned no row: the key (or contract id) is taken.
		return out, &domain.Error{Code: domain.CodeExists, Message: "contract " + c.Key().String() + " already exists"}
	}
	return out, err
}

// statement is one more statement for persist to send along with a
// contract's own writes, in the same round trip.
type statement struct {
	sql  string
	args []any
}

// persist writes what the domain decided for c, a contract locked in this
// transaction as before: the columns that changed (and updated_at, unless
// only the reconciliation schedule moved), every
// pending history row, and the extra statements, all sent to Postgres as one
// batch: one round trip however many rows are written. The version the
// contract was read at must still be current.
func (tx *Tx) persist(ctx context.Context, before, c domain.Contract, extra ...statement) (domain.Contract, error) {
	var b pgx.Batch
	read := queuePersist(&b, before, c, extra...)
	if b.Len() == 0 {
		return c, nil
	}
	var saved domain.Contract
	err := tx.sendWrites(ctx, &b, func(br pgx.BatchResults) error {
		var err error
		saved, err = read(br)
		return err
	})
	return saved, err
}

// queuePersist queues on b what persist writes for c, and returns the
// function that reads their results from the batch, in queue order, and
// answers c as stored. Several contracts' writes can share one batch.
func queuePersist(b *pgx.Batch, before, c domain.Contract, extra ...statement) func(br pgx.BatchResults) (domain.Contract, error) {
	// A contract whose reconciliation schedule alone moved (Scheduled)
	// keeps its updated_at: it did not change.
	changed := c.Dirty() || c.Scheduled()
	if changed {
		sets, args := changedSets(writtenColumns, &before, &c, []any{c.ID, before.Version})
		if c.Dirty() {
			sets = append(sets, "updated_at = now()")
		}
		b.Queue(`UPDATE contracts SET `+strings.Join(sets, ", ")+`
			WHERE id = $1 AND version = $2 RETURNING `+contractColumns, args...)
	}
	pending := c.Pending()
	for _, r := range pending {
		queueEvent(b, &c, r)
	}
	for _, st := range extra {
		b.Queue(st.sql, st.args...)
	}
	return func(br pgx.BatchResults) (domain.Contract, error) {
		saved := c
		if changed {
			rows, err := br.Query()
			if err == nil {
				saved, err = pgx.CollectExactlyOneRow(rows, scanContract)
			}
			if errors.Is(err, pgx.ErrNoRows) {
				// Not the caller's "no such contract": the row was read
				// under a lock in this transaction, so this is a bug.
				err = fmt.Errorf("store: contract %s was not at version %d under its own lock", c.Key(), before.Version)
			}
			if err != nil {
				return c, mapErr(err)
			}
		}
		for i := 0; i < len(pending)+len(extra); i++ {
			if _, err := br.Exec(); err != nil {
				return c, mapErr(err)
			}
		}
		return saved, nil
	}
}

// queueEvent queues the insert of one history row of c. Its xid column
// defaults to the writing transaction's id, which orders the feed (see
// Feed): no lock is taken.
func queueEvent(b *pgx.Batch, c *domain.Contract, r domain.Record) {
	d, ch := r.Decision, r.Change
	b.Queue(`INSERT INTO contract_events (contract_pk, sub_mchid, out_contract_code,
		from_state, to_state, event, source, ignored, details, occurred_at, contract_version)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)`,
		c.ID, c.SubMchID, c.OutContractCode, d.From, d.To, ch.Event, ch.Source,
		d.Outcome == domain.OutcomeIgnore, ch.Details, ch.OccurredAt, r.Version)
}

func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// List returns one page of contracts, oldest first by (created_at, id), and
// the opaque cursor of the next page ("" on the last page). It is a heavy
// read: it waits for one of the HeavyReaders places.
func (s *Store) List(ctx context.Context, f domain.ListFilter) ([]domain.Contract, string, error) {
	return s.list(ctx, f)
}

// List is Store.List on the view's pool: a page of the console's contract
// list or CSV export, as old as the standby's replication lag.
func (r *Reads) List(ctx context.Context, f domain.ListFilter) ([]domain.Contract, string, error) {
	return r.list(ctx, f)
}

func (s *handle) list(ctx context.Context, f domain.ListFilter) ([]domain.Contract, string, error) {
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
	var cs []domain.Contract
	b := &pgx.Batch{}
	b.Queue(fmt.Sprintf(`SELECT %s FROM contracts %s
		ORDER BY created_at, id LIMIT $%d`, contractColumns, where, len(args)), args...).Query(func(rows pgx.Rows) error {
		var err error
		cs, err = appendContracts([]domain.Contract{}, rows)
		return err
	})
	if err := s.heavyRead(ctx, b); err != nil {
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
