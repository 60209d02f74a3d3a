package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/contractd/contractd/domain"
	"github.com/labstack/echo/v5"
)

// ClientIP returns how a request's client address is found. Without
// trusted proxies it is the TCP peer's. With them, a request whose peer is
// inside one of trusted is from the nearest address of X-Forwarded-For
// that is not itself inside one (Echo's ExtractIPFromXFFHeader); from any
// other peer the header is ignored. Loopback, link-local and private peers
// are trusted only when trusted lists them, unlike Echo's defaults.
func ClientIP(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// ThrottleStore is where the token throttle counts; *store.Store is the one
// implementation.
type ThrottleStore interface {
	CountAuthAttempt(ctx context.Context, address string, failed bool, t domain.AuthThrottle) (domain.AuthCount, error)
	ForgetAuthFailures(ctx context.Context, window time.Duration) error
}

// Throttle slows down token guessing, one for the API's bearer tokens and
// the console's sign-in, shared by every replica through Postgres: each
// attempt (a request presenting a token, a sign-in) from a client address
// is counted and decided in one atomic step (see store.CountAuthAttempt)
// by the rule of domain.AuthThrottle.
//
// A right token from an address that the store has just found below its
// limit is let through without asking the store again for ClearFor (one
// second): an app server presenting its right token thousands of times a
// second costs one throttle round trip a second per replica, not one per
// request. Right tokens that arrive from one address while it has no fresh
// mark (at start-up, and each time the mark lapses, with all of an app
// server's connections busy) share one round trip: the first asks the
// store, the others wait for its answer and take it as their own, rather
// than each taking a pool connection (which may first have to be opened)
// for the same question. Wrong tokens are always counted in the store, one
// round trip each, and a wrong token seen here forgets the address's mark
// and its right tokens' question in flight at once, so the limit on
// guesses is exact on every replica. What the mark allows is bounded and
// harmless: for at most ClearFor after an address went over its limit on
// another replica, a right token from it may still be served there.
type Throttle struct {
	store ThrottleStore
	rule  domain.AuthThrottle
	log   *slog.Logger
	now   func() time.Time

	mu     sync.Mutex
	clear  map[string]time.Time
	asking map[string]*rightAsk
}

// rightAsk is the store's answer for right tokens from one address, asked
// once for all those that arrive while it is in flight: done is closed
// when c and err are set.
type rightAsk struct {
	done chan struct{}
	c    domain.AuthCount
	err  error
}

// ClearFor is how long a right token's finding that its address is below
// the limit is trusted without asking the store again.
const ClearFor = time.Second

// maxClearMarks bounds the addresses remembered as clear; past it the
// marks are dropped together (each costs one more round trip, at most).
const maxClearMarks = 4096

// NewThrottle returns the throttle counting in st by rule.
func NewThrottle(st ThrottleStore, rule domain.AuthThrottle, log *slog.Logger) *Throttle {
	if log == nil {
		log = slog.Default()
	}
	return &Throttle{store: st, rule: rule, log: log, now: time.Now, clear: map[string]time.Time{}, asking: map[string]*rightAsk{}}
}

// rightToken decides a right token from key: admitted at once under a
// fresh mark; otherwise by the store's count, asked once for every right
// token from key that arrives while the question is in flight (shared: the
// answer was another's).
func (t *Throttle) rightToken(ctx context.Context, key string) (c domain.AuthCount, shared bool, err error) {
	for {
		t.mu.Lock()
		if until, ok := t.clear[key]; ok && t.now().Before(until) {
			t.mu.Unlock()
			return domain.AuthCount{}, false, nil
		}
		if ask := t.asking[key]; ask != nil {
			t.mu.Unlock()
			select {
			case <-ask.done:
			case <-ctx.Done():
				return domain.AuthCount{}, true, &domain.Error{Code: domain.CodeUnavailable,
					Message: "the caller went away while the token throttle was asked", Err: ctx.Err()}
			}
			if ask.err != nil && ctx.Err() == nil && (errors.Is(ask.err, context.Canceled) || errors.Is(ask.err, context.DeadlineExceeded)) {
				continue // the asker went away, not the store: ask again
			}
			return ask.c, true, ask.err
		}
		ask := &rightAsk{done: make(chan struct{})}
		t.asking[key] = ask
		t.mu.Unlock()
		t.ask(ctx, key, ask)
		return ask.c, false, ask.err
	}
}

// errAskUnfinished is a shared question's answer when its asker never got
// one (it panicked).
var errAskUnfinished = errors.New("the token throttle's question did not finish")

// ask asks the store for key's right tokens, marks key when it is clear,
// and answers everyone waiting on ask, whatever happens.
func (t *Throttle) ask(ctx context.Context, key string, ask *rightAsk) {
	ask.err = errAskUnfinished
	defer close(ask.done)
	defer func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		// A wrong token counted meanwhile took the question away: its
		// answer stands for those who asked, but marks nothing.
		if t.asking[key] != ask {
			return
		}
		delete(t.asking, key)
		if ask.err == nil && ask.c.Failures == 0 {
			if len(t.clear) >= maxClearMarks {
				clear(t.clear)
			}
			t.clear[key] = t.now().Add(ClearFor)
		}
	}()
	ask.c, ask.err = t.store.CountAuthAttempt(ctx, key, false, t.rule)
}

// forget drops key's mark and its right tokens' question in flight: a
// wrong token came from it.
func (t *Throttle) forget(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.clear, key)
	delete(t.asking, key)
}

// Rule is the throttle's rule.
func (t *Throttle) Rule() domain.AuthThrottle { return t.rule }

// Attempt counts an attempt from the client address addr whose token was
// wrong (failed) or right, and decides it: a TOO_MANY_REQUESTS error
// (with RetryAfter) when the address is beyond the limit, whatever the
// token. The caller checks the token in constant time before, and acts on
// it only when Attempt lets the attempt through; the count comes back for
// its logs.
func (t *Throttle) Attempt(ctx context.Context, addr string, failed bool) (domain.AuthCount, error) {
	key := ThrottleKey(addr)
	var c domain.AuthCount
	var shared bool
	var err error
	if failed {
		t.forget(key)
		c, err = t.store.CountAuthAttempt(ctx, key, true, t.rule)
	} else {
		c, shared, err = t.rightToken(ctx, key)
	}
	if err != nil {
		return c, fmt.Errorf("token throttle: %w", err)
	}
	if t.rule.Refuses(c) {
		if c.Failures == int64(t.rule.Limit)+1 && !shared {
			// Logged once per window: by the attempt that went over.
			t.log.WarnContext(ctx, "client address throttled: too many wrong tokens", "address", addr,
				"limit", t.rule.Limit, "until", t.rule.Ends(c).UTC().Format(time.RFC3339))
		}
		return c, t.rule.Refusal(c, t.now())
	}
	if failed {
		if err := t.store.ForgetAuthFailures(ctx, t.rule.Window); err != nil {
			t.log.WarnContext(ctx, "forgetting lapsed token failures failed", "error", err.Error())
		}
	}
	return c, nil
}

// ThrottleKey is the key an address's attempts are counted under: an IPv4
// address itself, an IPv6 address by its /64 (one end network usually
// holds a whole /64, so its addresses are not each a fresh budget).
// Anything that is not an address counts as itself.
func ThrottleKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	ip = ip.WithZone("").Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return ip.String()
	}
	return p.String()
}
