package domain

import "time"

// AuthThrottle is the rule that slows down token guessing, for the API's
// bearer tokens and the console's sign-in alike: an address may present
// Limit wrong tokens within Window, counted from its first failure; after
// that every attempt from it, with a right token or a wrong one, is refused
// until the window has passed.
//
// The count and the decision are one atomic step in the store (see
// store.CountAuthAttempt), so that attempts racing each other, on any
// replica, cannot all find the address below the limit.
type AuthThrottle struct {
	Limit  int
	Window time.Duration
}

// AuthCount is what the store's atomic step counted for one attempt: the
// address's attempts in its current window once this one was counted, and
// when that window began. A right token from an address below the limit is
// not counted: its count is zero.
type AuthCount struct {
	Failures    int64
	WindowStart time.Time
}

// Refuses reports whether the attempt that produced c must be refused
// without its token being let through: it is beyond the limit.
func (t AuthThrottle) Refuses(c AuthCount) bool {
	return c.Failures > int64(t.Limit)
}

// Ends is when the window of c passes and the address is served again.
func (t AuthThrottle) Ends(c AuthCount) time.Time {
	return c.WindowStart.Add(t.Window)
}

// Refusal is the TOO_MANY_REQUESTS error for an attempt Refuses refused at
// now, its RetryAfter the rest of the window (at least a second).
func (t AuthThrottle) Refusal(c AuthCount, now time.Time) *Error {
	wait := t.Ends(c).Sub(now)
	if wait < time.Second {
		wait = time.Second
	}
	return &Error{Code: CodeTooManyRequests, RetryAfter: wait,
		Message: "too many wrong tokens from this client address: every request from it is refused until the window has passed (Retry-After)"}
}
