package httpapi

import (
	"context"
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
// request. Wrong tokens are always counted in the store, and a wrong token
// seen here forgets the address's mark at once, so the limit on guesses is
// exact on every replica. What the mark allows is bounded and harmless: for
// at most ClearFor after an address went over its limit on another
// replica, a right token from it may still be served there.
type Throttle struct {
	store ThrottleStore
	rule  domain.AuthThrottle
	log   *slog.Logger
	now   func() time.Time

	mu    sync.Mutex
	clear map[string]time.Time
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
	return &Throttle{store: st, rule: rule, log: log, now: time.Now, clear: map[string]time.Time{}}
}

// isClear reports whether key was found below the limit within ClearFor.
func (t *Throttle) isClear(key string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	until, ok := t.clear[key]
	return ok && now.Before(until)
}

// mark records that key was found below the limit at now, or
// forgets that it was (below false: a wrong token from it).
func (t *Throttle) mark(key string, now time.Time, below bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !below {
		delete(t.clear, key)
		return
	}
	if len(t.clear) >= maxClearMarks {
		clear(t.clear)
	}
	t.clear[key] = now.Add(ClearFor)
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
	if !failed && t.isClear(key, t.now()) {
		return domain.AuthCount{}, nil
	}
	if failed {
		t.mark(key, time.Time{}, false)
	}
	c, err := t.store.CountAuthAttempt(ctx, key, failed, t.rule)
	if err != nil {
		return c, fmt.Errorf("token throttle: %w", err)
	}
	if !failed && c.Failures == 0 {
		t.mark(key, t.now(), true)
	}
	if t.rule.Refuses(c) {
		if c.Failures == int64(t.rule.Limit)+1 {
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
