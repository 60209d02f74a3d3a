package webhook_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/webhook"
)

// Whatever the header and body, Verify answers without panicking, with nil
// or one of the package's errors; and what it accepts carries, among its
// v1 entries, the signature Sign makes of this body at the header's t with
// the secret.
func FuzzVerify(f *testing.F) {
	f.Add(webhook.Sign(now, body, secretA), body)
	f.Add(webhook.Sign(now, body, secretB, secretA), body)
	f.Add("t=1767225600,v1=", []byte("{}"))
	f.Add("t=1767225600,,v1=00", []byte(nil))
	f.Add(" t = 1 , v1 = 2 ", []byte("x"))
	f.Add("t=99999999999999999999,v1=ab", []byte("x"))
	v := webhook.Verifier{Secrets: []string{secretA}, Now: clock(now)}
	f.Fuzz(func(t *testing.T, header string, b []byte) {
		err := v.Verify(header, b)
		if err == nil {
			var ts int64
			var v1 []string
			for part := range strings.SplitSeq(header, ",") {
				k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
				switch k {
				case "t":
					ts, _ = strconv.ParseInt(val, 10, 64)
				case "v1":
					v1 = append(v1, val)
				}
			}
			_, want, _ := strings.Cut(webhook.Sign(time.Unix(ts, 0), b, secretA), ",v1=")
			for _, got := range v1 {
				if strings.EqualFold(got, want) {
					return
				}
			}
			t.Fatalf("accepted %q for %q, which lacks v1=%s", header, b, want)
		}
		for _, known := range []error{webhook.ErrMissingHeader, webhook.ErrMalformedHeader, webhook.ErrNoV1,
			webhook.ErrSignatureMismatch, webhook.ErrOutsideTolerance} {
			if errors.Is(err, known) {
				return
			}
		}
		t.Fatalf("Verify(%q) = %v: not one of the package's errors", header, err)
	})
}
