package webhook

import (
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far a signature's t may be from the receiver's
// clock, either way, when Verifier.Tolerance is not set.
const DefaultTolerance = 300 * time.Second

// DefaultMaxBodyBytes is the largest body Verifier.Read reads when
// Verifier.MaxBodyBytes is not set: far above what a batch of 100 events
// takes.
const DefaultMaxBodyBytes = 4 << 20

// Why a delivery is refused. Every error Verify, Read and Decode return
// matches one of these with errors.Is.
var (
	// ErrNoSecrets: the Verifier holds no secret to verify with (empty
	// strings do not count).
	ErrNoSecrets = errors.New("webhook: no secret to verify with")
	// ErrMissingHeader: the delivery has no Contractd-Signature header.
	ErrMissingHeader = errors.New("webhook: no " + SignatureHeader + " header")
	// ErrMalformedHeader: the header is not "t=<unix seconds>,v1=<hex>...":
	// a part without "=", no t or more than one, a t that is not a number,
	// or a v1 that is not 64 hex digits.
	ErrMalformedHeader = errors.New("webhook: malformed " + SignatureHeader + " header")
	// ErrNoV1: the header is well formed but carries no v1 entry.
	ErrNoV1 = errors.New("webhook: no v1 signature in the " + SignatureHeader + " header")
	// ErrSignatureMismatch: no v1 entry is the signature of this body under
	// any of the secrets: a wrong secret or an altered body (the two cannot
	// be told apart; that is the point of a signature).
	ErrSignatureMismatch = errors.New("webhook: no v1 signature matches the body under any secret")
	// ErrOutsideTolerance: the signature's t is more than the tolerance
	// away from the receiver's clock. ErrTimestampTooOld and
	// ErrTimestampInFuture say which way, and both match it.
	ErrOutsideTolerance = errors.New("webhook: signature timestamp outside the tolerance")
	// ErrTimestampTooOld: t is older than now minus the tolerance (a
	// delivery replayed later, or a receiver's clock ahead).
	ErrTimestampTooOld = fmt.Errorf("%w: too old", ErrOutsideTolerance)
	// ErrTimestampInFuture: t is later than now plus the tolerance (a
	// receiver's clock behind).
	ErrTimestampInFuture = fmt.Errorf("%w: in the future", ErrOutsideTolerance)
	// ErrBodyTooLarge: Read met a body over the Verifier's MaxBodyBytes.
	ErrBodyTooLarge = errors.New("webhook: body too large")
	// ErrMalformedBody: the body (verified) is not a batch's JSON.
	ErrMalformedBody = errors.New("webhook: malformed body")
)

// Verifier verifies deliveries against an endpoint's secrets. Its zero
// value (but for Secrets) is ready to use; it is safe for concurrent use
// as long as its fields are not changed meanwhile.
type Verifier struct {
	// Secrets are the endpoint's secrets ("whsec_..."), as contractd
	// answered them at creation or rotation. A delivery verifies when any
	// of its v1 entries matches any of them; during a rotation, list both
	// the new and the previous one until the receiver has switched.
	// Empty strings are skipped.
	Secrets []string
	// Tolerance is how far the signature's t may be from Now, either way;
	// zero or less means DefaultTolerance.
	Tolerance time.Duration
	// Now is the receiver's clock; nil means time.Now.
	Now func() time.Time
	// MaxBodyBytes bounds the body Read reads; zero or less means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// Verify checks header (a Contractd-Signature value) against the raw
// body: some v1 entry must be the HMAC-SHA256 of "<t>.<body>" under one of
// the secrets (compared in constant time), and t must be within the
// tolerance of Now. The signature is checked before the time, so that
// ErrTimestampTooOld and ErrTimestampInFuture name genuine deliveries
// (replayed, or a clock that is off). It returns nil or an error matching
// one of the package's Err values.
func (v *Verifier) Verify(header string, body []byte) error {
	var secrets []string
	for _, s := range v.Secrets {
		if s != "" {
			secrets = append(secrets, s)
		}
	}
	if len(secrets) == 0 {
		return ErrNoSecrets
	}
	if strings.TrimSpace(header) == "" {
		return ErrMissingHeader
	}
	sig, err := parseHeader(header)
	if err != nil {
		return err
	}
	if len(sig.v1) == 0 {
		return ErrNoV1
	}
	ts := strconv.FormatInt(sig.t, 10)
	matched := false
	for _, s := range secrets {
		want := mac(s, ts, body)
		for _, got := range sig.v1 {
			if hmac.Equal(want, got) {
				matched = true
			}
		}
	}
	if !matched {
		return ErrSignatureMismatch
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	tol := v.Tolerance
	if tol <= 0 {
		tol = DefaultTolerance
	}
	at := time.Unix(sig.t, 0)
	n := now()
	switch {
	case at.Before(n.Add(-tol)):
		return fmt.Errorf("%w: t=%d is %s before now (tolerance %s)", ErrTimestampTooOld, sig.t, n.Sub(at).Truncate(time.Second), tol)
	case at.After(n.Add(tol)):
		return fmt.Errorf("%w: t=%d is %s after now (tolerance %s)", ErrTimestampInFuture, sig.t, at.Sub(n).Truncate(time.Second), tol)
	}
	return nil
}

// Read reads r's body (at most MaxBodyBytes), verifies it against r's
// Contractd-Signature header and decodes it. The caller answers 2xx once
// it has taken the batch in (durably, if it must not lose it), and
// anything else on an error: contractd then sends the batch again.
func (v *Verifier) Read(r *http.Request) (Batch, error) {
	limit := v.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	if r.ContentLength > limit {
		return Batch{}, fmt.Errorf("%w: Content-Length %d, limit %d", ErrBodyTooLarge, r.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return Batch{}, fmt.Errorf("webhook: reading the body: %w", err)
	}
	if int64(len(body)) > limit {
		return Batch{}, fmt.Errorf("%w: over %d bytes", ErrBodyTooLarge, limit)
	}
	if err := v.Verify(r.Header.Get(SignatureHeader), body); err != nil {
		return Batch{}, err
	}
	return Decode(body)
}

// signature is a parsed Contractd-Signature value.
type signature struct {
	t  int64
	v1 [][]byte
}

// parseHeader parses "t=<unix seconds>,v1=<hex>[,v1=<hex>]...". Entries of
// other schemes are skipped (a later contractd may add some); spaces
// around entries are allowed.
func parseHeader(header string) (signature, error) {
	var sig signature
	seenT := false
	for part := range strings.SplitSeq(header, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || k == "" {
			return signature{}, fmt.Errorf("%w: entry %q is not key=value", ErrMalformedHeader, part)
		}
		switch k {
		case "t":
			if seenT {
				return signature{}, fmt.Errorf("%w: more than one t", ErrMalformedHeader)
			}
			seenT = true
			t, err := strconv.ParseInt(val, 10, 64)
			if err != nil || t <= 0 || val[0] == '+' {
				return signature{}, fmt.Errorf("%w: t=%q is not unix seconds", ErrMalformedHeader, val)
			}
			sig.t = t
		case "v1":
			b, err := hex.DecodeString(val)
			if err != nil || len(b) != 32 {
				return signature{}, fmt.Errorf("%w: v1 is not 64 hex digits", ErrMalformedHeader)
			}
			sig.v1 = append(sig.v1, b)
		}
	}
	if !seenT {
		return signature{}, fmt.Errorf("%w: no t", ErrMalformedHeader)
	}
	return sig, nil
}
