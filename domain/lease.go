package domain

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// A lease is the right, for a short while, to make the one call to WeChat
// that a contract is waiting on: the pre-sign call that opens its session, or
// the operator's terminate call. Whoever takes it holds a random token and
// renews the lease while its call runs (RenewLease), so the lease itself can
// be short: when its holder dies, the lease lapses within one lease term and
// the next caller takes over instead of waiting for a long claim to run out.
// Everyone else who comes for the same contract while the lease is held waits
// for the holder's outcome rather than calling WeChat a second time.
//
// Leases are compared with the deciding process's clock; replicas are
// expected to keep their clocks within a small fraction of a lease term of
// each other (NTP does far better than that).

// LeaseHeld reports whether somebody holds the contract's lease at now.
func (c *Contract) LeaseHeld(now time.Time) bool {
	return c.LeaseToken != "" && c.LeaseExpiresAt != nil && now.Before(*c.LeaseExpiresAt)
}

// LeaseLeft is how long the lease held at now has still to run: when an
// answer to a waiter should suggest asking again. It is zero when no lease
// is held.
func (c *Contract) LeaseLeft(now time.Time) time.Duration {
	if !c.LeaseHeld(now) {
		return 0
	}
	return c.LeaseExpiresAt.Sub(now)
}

// takeLease gives the lease to a new holder until now+ttl and returns the
// holder's token. tookOver says whether it replaced a holder whose lease had
// lapsed (a holder that died, or lost the database, mid-call).
func (c *Contract) takeLease(now time.Time, ttl time.Duration) (token string, tookOver bool) {
	tookOver = c.LeaseToken != ""
	token = newLeaseToken()
	until := now.Add(ttl)
	c.LeaseToken, c.LeaseExpiresAt = token, &until
	c.dirty = true
	return token, tookOver
}

// RenewLease extends the lease held under token to now+ttl. It refuses with
// LEASE_LOST when the token no longer holds the lease (it lapsed and
// somebody took it over): the caller must stop renewing, and its outcome
// will not be recorded as the lease holder's.
func (c *Contract) RenewLease(token string, now time.Time, ttl time.Duration) error {
	if token == "" || c.LeaseToken != token {
		return Errorf(CodeLeaseLost, "the lease on contract %s passed to another holder", c.Key())
	}
	until := now.Add(ttl)
	c.LeaseExpiresAt = &until
	c.dirty = true
	return nil
}

// releaseLease ends the lease held under token; it reports whether token held
// it. A token that no longer holds the lease releases nothing.
func (c *Contract) releaseLease(token string) bool {
	if token == "" || c.LeaseToken != token {
		return false
	}
	c.LeaseToken, c.LeaseExpiresAt = "", nil
	c.dirty = true
	return true
}

func newLeaseToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}

// Wait tells a caller that somebody else's call to WeChat for the contract is
// under way: wait for its outcome (asking again after a short pause) until
// the caller's wait bound, then answer IN_PROGRESS.
type Wait struct {
	// LeaseLeft is how long the holder's lease has still to run.
	LeaseLeft time.Duration
}

// InProgress is the error a waiter answers when its wait bound passed while
// somebody else's call was still under way. RetryAfter is when to ask again:
// what is left of the holder's lease, and at least a second.
func InProgress(what string, key Key, leaseLeft time.Duration) *Error {
	after := leaseLeft.Round(time.Second)
	if after < leaseLeft {
		after += time.Second
	}
	if after < time.Second {
		after = time.Second
	}
	return &Error{Code: CodeInProgress, RetryAfter: after,
		Message: what + " of contract " + key.String() + " is still under way; ask again after Retry-After"}
}

// failCall records a failed call to WeChat as the contract's last error.
func (c *Contract) failCall(e CallError) {
	c.LastError = &e
	c.dirty = true
}
