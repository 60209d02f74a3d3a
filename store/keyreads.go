package store

import (
	"context"
	"sync"

	"github.com/contractd/contractd/domain"
	"github.com/jackc/pgx/v5"
)

// keyReads coalesces this process's concurrent reads of contracts by key
// (Get: every GET /v1/contracts/{code}, and the flows' reads) into fewer
// round trips, the way a database's group commit coalesces flushes.
//
// A read that finds fewer than limit queries in flight sends its own at
// once, together with any reads queued before it: when the service is not
// saturated a read waits for nothing. When limit queries are already in
// flight, the read queues; the first of them to finish hands everything
// queued (at most maxKeyReadBatch reads: the read that would make the
// queue that long sends it at once, as one more query in flight) to one
// queued reader, which sends it as one query
// (`... WHERE sub_mchid = ANY($1) AND out_contract_code = ANY($2)`, through
// the table's unique key) and answers every reader of the batch. Under load
// a read therefore costs a fraction of a query's system calls and of
// Postgres's per-statement work, which on a small machine is most of what a
// read by key costs (BENCHMARKS.md, issue 19).
//
// Nothing is cached, and a read is never answered from a query sent before
// it arrived: a caller that has seen its own write commit reads it back,
// on this replica as on any other.
type keyReads struct {
	limit int // queries in flight at most, before reads queue

	mu       sync.Mutex
	inFlight int
	queued   []*keyRead
}

// maxKeyReadBatch bounds the reads one query carries.
const maxKeyReadBatch = 128

// keyRead is one caller's read: its key, and once done is closed its
// answer, or the batch it must send for everyone in it (lead).
type keyRead struct {
	key  domain.Key
	done chan struct{}
	// Set before done is closed: c (within the batch's rows) or err.
	c    *domain.Contract
	err  error
	lead []*keyRead
}

// get reads the contract with key, coalesced with the reads around it;
// send sends one batch's query (sendKeyReads).
func (k *keyReads) get(ctx context.Context, key domain.Key, send func(context.Context, []*keyRead)) (domain.Contract, error) {
	r := &keyRead{key: key, done: make(chan struct{})}
	k.mu.Lock()
	if k.inFlight < k.limit || len(k.queued)+1 >= maxKeyReadBatch {
		k.inFlight++
		batch := append(k.queued, r)
		k.queued = nil
		k.mu.Unlock()
		k.lead(ctx, r, batch, send)
		return r.answer()
	}
	k.queued = append(k.queued, r)
	k.mu.Unlock()
	select {
	case <-r.done:
	case <-ctx.Done():
		k.mu.Lock()
		for i, q := range k.queued {
			if q == r { // still only queued: leave without a trace
				k.queued = append(k.queued[:i], k.queued[i+1:]...)
				k.mu.Unlock()
				return domain.Contract{}, &domain.Error{Code: domain.CodeUnavailable,
					Message: "the caller went away while waiting for the database", Err: ctx.Err()}
			}
		}
		k.mu.Unlock()
		// Already in a batch: it is answered (or must lead) soon, within
		// the statement timeout of the query that carries it.
		<-r.done
	}
	if r.lead != nil {
		k.lead(ctx, r, r.lead, send)
	}
	return r.answer()
}

// answer is the read's contract or its error.
func (r *keyRead) answer() (domain.Contract, error) {
	if r.err != nil {
		return domain.Contract{}, r.err
	}
	return *r.c, nil
}

// lead sends batch (self's, which holds one of the inFlight places),
// answers every other reader in it, then hands the place on: to the first
// reader queued meanwhile, with everything queued as its batch, or back.
// The batch's query outlives its leader's caller (the others wait on it),
// so it runs on ctx without its cancellation, within the statement timeout.
func (k *keyReads) lead(ctx context.Context, self *keyRead, batch []*keyRead, send func(context.Context, []*keyRead)) {
	send(context.WithoutCancel(ctx), batch)
	for _, r := range batch {
		if r != self {
			close(r.done)
		}
	}
	k.mu.Lock()
	if len(k.queued) == 0 {
		k.inFlight--
		k.mu.Unlock()
		return
	}
	next := k.queued
	k.queued = nil
	k.mu.Unlock()
	next[0].lead = next
	close(next[0].done)
}

// sendKeyReads reads the contracts of batch in one query and sets each
// reader's answer: its contract, or CONTRACT_NOT_EXIST, or the query's
// error for all of them.
func (s *Store) sendKeyReads(ctx context.Context, batch []*keyRead) {
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	var rows pgx.Rows
	var err error
	if len(batch) == 1 {
		rows, err = s.pool.Query(ctx, `SELECT `+contractColumns+` FROM contracts
			WHERE sub_mchid = $1 AND out_contract_code = $2`, batch[0].key.SubMchID, batch[0].key.OutContractCode)
	} else {
		subs, codes := make([]string, len(batch)), make([]string, len(batch))
		for i, r := range batch {
			subs[i], codes[i] = r.key.SubMchID, r.key.OutContractCode
		}
		// ANY on both columns may match a pair no reader asked for (one
		// reader's sub-merchant with another's code); the matching below
		// keeps the asked.
		rows, err = s.pool.Query(ctx, `SELECT `+contractColumns+` FROM contracts
			WHERE sub_mchid = ANY($1) AND out_contract_code = ANY($2)`, subs, codes)
	}
	var found []domain.Contract
	if err == nil {
		found, err = appendContracts(make([]domain.Contract, 0, len(batch)), rows)
	}
	if err != nil {
		err = mapErr(err)
		for _, r := range batch {
			r.err = err
		}
		return
	}
	// Each reader points at its row: a small batch by looking, a large
	// one through a map.
	var byKey map[domain.Key]int
	if len(found) > smallKeyBatch {
		byKey = make(map[domain.Key]int, len(found))
		for i := range found {
			byKey[found[i].Key()] = i
		}
	}
	for _, r := range batch {
		i := -1
		if byKey != nil {
			if j, ok := byKey[r.key]; ok {
				i = j
			}
		} else {
			for j := range found {
				if found[j].SubMchID == r.key.SubMchID && found[j].OutContractCode == r.key.OutContractCode {
					i = j
					break
				}
			}
		}
		if i < 0 {
			r.err = mapErr(pgx.ErrNoRows)
			continue
		}
		r.c = &found[i]
	}
}

// smallKeyBatch is the most rows a batch's readers look through for their
// own, rather than through a map.
const smallKeyBatch = 8
