package drill

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Operation names, as the report prints them.
const (
	opPreSign = "pre-sign"
	opGet     = "GET contract"
	opSimSign = "user signs (simulator)"
)

// load puts pre-signs, signings (and so WeChat's notifications) and
// contract reads through the front until stopped.
type load struct {
	c       *client
	rec     *recorder
	prefix  string
	signLag time.Duration

	seq  atomic.Int64
	stop atomic.Bool
	wg   sync.WaitGroup

	mu      sync.Mutex
	pending []pendingContract // pre-signed, not yet signed, oldest first
	codes   []string          // every code pre-signed (201), in order
	stable  int               // GETs read codes[:stable] once set (> 0)
	signed  map[string]time.Time
}

type pendingContract struct {
	code string
	at   time.Time
}

func newLoad(c *client, prefix string, signLag time.Duration) *load {
	return &load{c: c, rec: &recorder{}, prefix: prefix, signLag: signLag, signed: map[string]time.Time{}}
}

// start runs workers pre-signing and signing, and getters reading.
func (l *load) start(ctx context.Context, workers, getters int) {
	for range workers {
		l.wg.Go(func() { l.work(ctx) })
	}
	for range getters {
		l.wg.Go(func() { l.read(ctx) })
	}
}

// halt stops the load and waits for the requests in flight.
func (l *load) halt() {
	l.stop.Store(true)
	l.wg.Wait()
}

// freezeCodes makes GETs read only the contracts pre-signed so far (those
// the database holds on every node before replication is frozen).
func (l *load) freezeCodes() {
	l.mu.Lock()
	l.stable = len(l.codes)
	l.mu.Unlock()
}

// work pre-signs a new contract, then signs (as the user) the oldest one
// pre-signed at least signLag ago: a signing then never concerns a
// contract whose pre-sign the failover could lose with it.
func (l *load) work(ctx context.Context) {
	for !l.stop.Load() && ctx.Err() == nil {
		code := fmt.Sprintf("%s-%d", l.prefix, l.seq.Add(1))
		t0 := time.Now()
		st := l.c.presign(ctx, code)
		l.rec.add(opPreSign, t0, st)
		if st == http.StatusCreated {
			l.mu.Lock()
			l.pending = append(l.pending, pendingContract{code: code, at: time.Now()})
			l.codes = append(l.codes, code)
			l.mu.Unlock()
		} else {
			pause(ctx, 50*time.Millisecond)
		}
		l.mu.Lock()
		var p pendingContract
		ok := len(l.pending) > 0 && time.Since(l.pending[0].at) >= l.signLag
		if ok {
			p, l.pending = l.pending[0], l.pending[1:]
		}
		l.mu.Unlock()
		if !ok {
			continue
		}
		t0 = time.Now()
		st = l.c.simSign(ctx, p.code)
		l.rec.add(opSimSign, t0, st)
		if st == http.StatusOK {
			l.mu.Lock()
			l.signed[p.code] = time.Now()
			l.mu.Unlock()
		}
	}
}

// read GETs random contracts already pre-signed.
func (l *load) read(ctx context.Context) {
	for !l.stop.Load() && ctx.Err() == nil {
		l.mu.Lock()
		n := len(l.codes)
		if l.stable > 0 {
			n = l.stable
		}
		code := ""
		if n > 0 {
			code = l.codes[rand.IntN(n)]
		}
		l.mu.Unlock()
		if code == "" {
			pause(ctx, 20*time.Millisecond)
			continue
		}
		t0 := time.Now()
		st := l.c.getContract(ctx, code)
		l.rec.add(opGet, t0, st)
		if !ok2xx(st) {
			pause(ctx, 50*time.Millisecond)
		}
	}
}

// signedCodes returns every contract the user signed at the simulator.
func (l *load) signedCodes() map[string]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]time.Time, len(l.signed))
	for k, v := range l.signed {
		out[k] = v
	}
	return out
}

// preSigned returns every code pre-signed (201).
func (l *load) preSigned() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.codes...)
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
