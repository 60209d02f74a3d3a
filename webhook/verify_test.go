package webhook_test

import (
	"bytes"
	"errors"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/webhook"
)

const (
	secretA = "whsec_4hJ0fYkQ2nV6mX9cB1dR5tW8zL3pS7uA0eG4iK6oM2q"
	secretB = "whsec_Zb7Yx2Wv5Ut8Sr1Qp4On7Ml0Kj3Ih6Gf9Ed2Cb5Aa8z"
)

var (
	now  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	body = []byte(`{"type":"events","endpoint_id":"ep_1","delivery_id":"d_1","events":[],"next_cursor":"c"}`)
)

// clock is a Verifier's Now that answers at.
func clock(at time.Time) func() time.Time { return func() time.Time { return at } }

func TestVerify(t *testing.T) {
	t.Parallel()
	signed := webhook.Sign(now, body, secretA)
	v1Of := func(h string) string { _, v, _ := strings.Cut(h, ",v1="); return v }
	tests := []struct {
		name    string
		header  string
		body    []byte
		secrets []string
		at      time.Time     // the receiver's clock; now when zero
		tol     time.Duration // the Verifier's Tolerance
		want    error         // nil: accepted
	}{
		{name: "good signature", header: signed, body: body, secrets: []string{secretA}},
		{name: "good among several secrets", header: signed, body: body, secrets: []string{secretB, secretA}},
		{name: "wrong secret", header: signed, body: body, secrets: []string{secretB}, want: webhook.ErrSignatureMismatch},
		{name: "altered body", header: signed, body: bytes.Replace(body, []byte(`"d_1"`), []byte(`"d_2"`), 1), secrets: []string{secretA}, want: webhook.ErrSignatureMismatch},
		{name: "body with a byte appended", header: signed, body: append(append([]byte{}, body...), '\n'), secrets: []string{secretA}, want: webhook.ErrSignatureMismatch},
		{name: "t changed in the header", header: strings.Replace(signed, "t="+strconv.FormatInt(now.Unix(), 10), "t="+strconv.FormatInt(now.Unix()+1, 10), 1), body: body, secrets: []string{secretA}, want: webhook.ErrSignatureMismatch},
		{name: "t older than the tolerance", header: webhook.Sign(now.Add(-301*time.Second), body, secretA), body: body, secrets: []string{secretA}, want: webhook.ErrTimestampTooOld},
		{name: "t exactly the tolerance old", header: webhook.Sign(now.Add(-300*time.Second), body, secretA), body: body, secrets: []string{secretA}},
		{name: "t in the future beyond the tolerance", header: webhook.Sign(now.Add(301*time.Second), body, secretA), body: body, secrets: []string{secretA}, want: webhook.ErrTimestampInFuture},
		{name: "t in the future within the tolerance", header: webhook.Sign(now.Add(299*time.Second), body, secretA), body: body, secrets: []string{secretA}},
		{name: "a tolerance of one's own", header: webhook.Sign(now.Add(-61*time.Second), body, secretA), body: body, secrets: []string{secretA}, tol: time.Minute, want: webhook.ErrTimestampTooOld},
		{name: "a day old", header: signed, body: body, secrets: []string{secretA}, at: now.Add(24 * time.Hour), want: webhook.ErrTimestampTooOld},
		{name: "wrong secret and old: the signature is named", header: webhook.Sign(now.Add(-time.Hour), body, secretA), body: body, secrets: []string{secretB}, want: webhook.ErrSignatureMismatch},
		{name: "rotation: the new secret verifies the first v1", header: webhook.Sign(now, body, secretB, secretA), body: body, secrets: []string{secretB}},
		{name: "rotation: the previous secret verifies the second v1", header: webhook.Sign(now, body, secretB, secretA), body: body, secrets: []string{secretA}},
		{name: "rotation: neither secret", header: webhook.Sign(now, body, secretB, secretA), body: body, secrets: []string{"whsec_other"}, want: webhook.ErrSignatureMismatch},
		{name: "spaces around entries", header: " t=" + strconv.FormatInt(now.Unix(), 10) + " , v1=" + v1Of(signed) + " ", body: body, secrets: []string{secretA}},
		{name: "entries of another scheme are skipped", header: signed + ",v0=abc,v2=", body: body, secrets: []string{secretA}},
		{name: "no header", header: "", body: body, secrets: []string{secretA}, want: webhook.ErrMissingHeader},
		{name: "blank header", header: "  ", body: body, secrets: []string{secretA}, want: webhook.ErrMissingHeader},
		{name: "garbage", header: "garbage", body: body, secrets: []string{secretA}, want: webhook.ErrMalformedHeader},
		{name: "garbage after a good signature", header: signed + ",garbage", body: body, secrets: []string{secretA}, want: webhook.ErrMalformedHeader},
		{name: "no t", header: "v1=" + v1Of(signed), body: body, secrets: []string{secretA}, want: webhook.ErrMalformedHeader},
		{name: "two t", header: signed + ",t=1", body: body, secrets: []string{secretA}, want: webhook.ErrMalformedHeader},
		{name: "t not a number", header: "t=yesterday,v1=" + v1Of(signed), body: body, secrets: []string{secretA}, want: webhook.ErrMalformedHeader},
		{name: "t negative", header: "t=-5,v1=" + v1Of(signed), body: body, secrets: []string{secretA}, want: webhook.ErrMalformedHeader},
		{name: "t with a plus sign", header: "t=+" + strconv.FormatInt(now.Unix(), 10) + ",v1=" + v1Of(signed), body: body, secrets: []string{secretA}, want: webhook.ErrMalformedHeader},
		{name: "v1 not hex", header: "t=1767225600,v1=" + strings.Repeat("zz", 32), body: body, secrets: []string{secretA}, want: webhook.ErrMalformedHeader},
		{name: "v1 too short", header: "t=1767225600,v1=abcd", body: body, secrets: []string{secretA}, want: webhook.ErrMalformedHeader},
		{name: "no v1", header: "t=1767225600", body: body, secrets: []string{secretA}, want: webhook.ErrNoV1},
		{name: "only another scheme", header: "t=1767225600,v0=" + v1Of(signed), body: body, secrets: []string{secretA}, want: webhook.ErrNoV1},
		{name: "no secret", header: signed, body: body, want: webhook.ErrNoSecrets},
		// An empty key is a key anyone has: a secret setting left empty
		// must not make every forger's signature verify.
		{name: "only an empty secret", header: webhook.Sign(now, body, ""), body: body, secrets: []string{""}, want: webhook.ErrNoSecrets},
		{name: "an empty secret is skipped", header: webhook.Sign(now, body, ""), body: body, secrets: []string{"", secretA}, want: webhook.ErrSignatureMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			at := tc.at
			if at.IsZero() {
				at = now
			}
			v := webhook.Verifier{Secrets: tc.secrets, Tolerance: tc.tol, Now: clock(at)}
			err := v.Verify(tc.header, tc.body)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify(%q) = %v, want accepted", tc.header, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify(%q) = %v, want %v", tc.header, err, tc.want)
			}
		})
	}
}

// The refusals are distinct values: a handler can tell them apart, and
// both timestamp errors are also ErrOutsideTolerance.
func TestErrorsAreDistinct(t *testing.T) {
	t.Parallel()
	errs := []error{webhook.ErrNoSecrets, webhook.ErrMissingHeader, webhook.ErrMalformedHeader, webhook.ErrNoV1,
		webhook.ErrSignatureMismatch, webhook.ErrTimestampTooOld, webhook.ErrTimestampInFuture,
		webhook.ErrBodyTooLarge, webhook.ErrMalformedBody}
	for i, a := range errs {
		for j, b := range errs {
			if i != j && errors.Is(a, b) {
				t.Errorf("%v matches %v", a, b)
			}
		}
	}
	for _, e := range []error{webhook.ErrTimestampTooOld, webhook.ErrTimestampInFuture} {
		if !errors.Is(e, webhook.ErrOutsideTolerance) {
			t.Errorf("%v does not match ErrOutsideTolerance", e)
		}
	}
}

// Without a Now, the Verifier uses the machine's clock; without a
// Tolerance, 300 s.
func TestVerifyDefaults(t *testing.T) {
	t.Parallel()
	v := webhook.Verifier{Secrets: []string{secretA}}
	if err := v.Verify(webhook.Sign(time.Now(), body, secretA), body); err != nil {
		t.Errorf("signed now: %v", err)
	}
	if err := v.Verify(webhook.Sign(time.Now().Add(-10*time.Minute), body, secretA), body); !errors.Is(err, webhook.ErrTimestampTooOld) {
		t.Errorf("signed 10 minutes ago: %v, want ErrTimestampTooOld", err)
	}
	if err := v.Verify(webhook.Sign(time.Now().Add(10*time.Minute), body, secretA), body); !errors.Is(err, webhook.ErrTimestampInFuture) {
		t.Errorf("signed 10 minutes ahead: %v, want ErrTimestampInFuture", err)
	}
}

func TestRead(t *testing.T) {
	t.Parallel()
	events := []byte(`{"type":"events","endpoint_id":"ep_1","delivery_id":"d_7","events":[` +
		`{"id":41,"event_id":"0b8f6a8e-3c1e-4d55-9a43-2f1d7f0c9a11","contract_version":2,"sub_mchid":"","out_contract_code":"c-1",` +
		`"from":"session_issued","to":"signed","event":"sign","source":"notification","ignored":false,` +
		`"details":{"contract_id":"wx1"},"occurred_at":"2026-01-01T00:00:00Z","recorded_at":"2026-01-01T00:00:01Z","added_later":true}],` +
		`"next_cursor":"c41","added_later":{"x":1}}`)
	request := func(header string, b []byte) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/webhooks/contractd", bytes.NewReader(b))
		r.Header.Set("Content-Type", "application/json")
		if header != "" {
			r.Header.Set(webhook.SignatureHeader, header)
		}
		return r
	}
	v := webhook.Verifier{Secrets: []string{secretA}, Now: clock(now), MaxBodyBytes: 4096}

	t.Run("VerifiedAndDecoded", func(t *testing.T) {
		t.Parallel()
		b, err := v.Read(request(webhook.Sign(now, events, secretA), events))
		if err != nil {
			t.Fatal(err)
		}
		if b.Type != webhook.TypeEvents || b.EndpointID != "ep_1" || b.DeliveryID != "d_7" || b.NextCursor != "c41" || len(b.Events) != 1 {
			t.Fatalf("batch %+v", b)
		}
		e := b.Events[0]
		want := webhook.Event{ID: 41, EventID: "0b8f6a8e-3c1e-4d55-9a43-2f1d7f0c9a11", ContractVersion: 2, OutContractCode: "c-1",
			From: "session_issued", To: "signed", Event: "sign", Source: "notification",
			OccurredAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), RecordedAt: time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)}
		got := e
		got.Details = nil
		if !got.OccurredAt.Equal(want.OccurredAt) || !got.RecordedAt.Equal(want.RecordedAt) {
			t.Fatalf("times %v %v", got.OccurredAt, got.RecordedAt)
		}
		got.OccurredAt, got.RecordedAt = want.OccurredAt, want.RecordedAt
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("event\n%+v, want\n%+v", got, want)
		}
		if string(e.Details) != `{"contract_id":"wx1"}` {
			t.Fatalf("details %s", e.Details)
		}
		if e.Contract().String() != "c-1" {
			t.Fatalf("contract %q", e.Contract())
		}
	})
	t.Run("Unsigned", func(t *testing.T) {
		t.Parallel()
		if _, err := v.Read(request("", events)); !errors.Is(err, webhook.ErrMissingHeader) {
			t.Fatalf("%v, want ErrMissingHeader", err)
		}
	})
	t.Run("WrongSecret", func(t *testing.T) {
		t.Parallel()
		if _, err := v.Read(request(webhook.Sign(now, events, secretB), events)); !errors.Is(err, webhook.ErrSignatureMismatch) {
			t.Fatalf("%v, want ErrSignatureMismatch", err)
		}
	})
	t.Run("TooLarge", func(t *testing.T) {
		t.Parallel()
		big := append(bytes.Repeat([]byte(" "), 4097), events...)
		if _, err := v.Read(request(webhook.Sign(now, big, secretA), big)); !errors.Is(err, webhook.ErrBodyTooLarge) {
			t.Fatalf("%v, want ErrBodyTooLarge", err)
		}
		// Without a Content-Length, the limit holds while reading.
		r := request(webhook.Sign(now, big, secretA), big)
		r.ContentLength = -1
		if _, err := v.Read(r); !errors.Is(err, webhook.ErrBodyTooLarge) {
			t.Fatalf("chunked: %v, want ErrBodyTooLarge", err)
		}
	})
	t.Run("SignedButNotABatch", func(t *testing.T) {
		t.Parallel()
		for _, b := range []string{`[]`, `null`, `{}`, `{"type":"events"`, `{"type":"events","events":{}}`} {
			if _, err := v.Read(request(webhook.Sign(now, []byte(b), secretA), []byte(b))); !errors.Is(err, webhook.ErrMalformedBody) {
				t.Errorf("%s: %v, want ErrMalformedBody", b, err)
			}
		}
	})
}

func TestDecodePing(t *testing.T) {
	t.Parallel()
	b, err := webhook.Decode([]byte(`{"type":"ping","endpoint_id":"ep_1","delivery_id":"d_9"}`))
	if err != nil || b.Type != webhook.TypePing || b.DeliveryID != "d_9" || len(b.Events) != 0 {
		t.Fatalf("Decode(ping) = %+v, %v", b, err)
	}
}

func TestContractKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		e    webhook.Event
		want string
	}{
		{webhook.Event{OutContractCode: "c-1"}, "c-1"},
		{webhook.Event{SubMchID: "1900000109", OutContractCode: "c-1"}, "1900000109/c-1"},
	} {
		if got := tc.e.Contract().String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.e, got, tc.want)
		}
	}
}

// Merchants import the package alone: it uses the standard library only.
func TestImportsOnlyTheStandardLibrary(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			if first, _, _ := strings.Cut(path, "/"); strings.Contains(first, ".") {
				t.Errorf("%s imports %s", f, path)
			}
		}
	}
}
