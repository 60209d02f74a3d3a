package httpapi

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
)

// appendContract writes exactly what json.Marshal writes for a contract,
// for every kind of value each field can hold: absent and present optional
// fields, strings that need every kind of escape (quotes, backslashes,
// control characters, HTML characters, U+2028 and U+2029, invalid UTF-8,
// multi-byte text), times with and without fractions, outside UTC, and
// outside the years RFC 3339 allows; and for 20,000 contracts drawn at
// random from those values.
func TestAppendContractIsWhatEncodingJSONWrites(t *testing.T) {
	t.Parallel()
	strs := []string{"", "plain-Code_123", `quote"d`, `back\slash`, "tab\tnew\nline\r", "bell\a\b\f\x00\x1f",
		"<script>&amp;</script>", "line\u2028sep\u2029", "bad\xffutf8\xc3", "张三 🙂", "del\x7f", "  spaced  "}
	times := []time.Time{
		time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC),
		time.Date(2026, 12, 3, 10, 0, 0, 123456789, time.UTC),
		time.Date(2026, 12, 3, 10, 0, 0, 120000000, time.UTC),
		time.Date(2026, 12, 3, 18, 0, 0, 5000, time.FixedZone("CST", 8*3600)),
		time.Date(2026, 12, 3, 18, 0, 0, 0, time.FixedZone("odd", 8*3600+30)),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		{},
	}
	ints := []*int64{nil, ptr(int64(0)), ptr(int64(123)), ptr(int64(-9223372036854775808))}
	r := rand.New(rand.NewPCG(1, 2))
	pick := func() string { return strs[r.IntN(len(strs))] }
	optTime := func() *time.Time {
		if r.IntN(3) == 0 {
			return nil
		}
		v := times[r.IntN(len(times))]
		return &v
	}
	contract := func() domain.Contract {
		ct := domain.Contract{ID: r.Int64(), SubMchID: pick(), OutContractCode: pick(), Product: domain.Product(pick()),
			Channel: domain.Channel(pick()), PlanID: ints[r.IntN(len(ints))], ServiceID: ints[r.IntN(len(ints))],
			State: domain.State(pick()), Version: r.Int64N(1000) - 10, SessionID: pick(), SessionExpiresAt: optTime(),
			Launch: json.RawMessage(`{"x":1}`), ContractID: pick(), OpenID: pick(), UserDisplayName: pick(),
			ContractDisplayAccount: pick(), SignedAt: optTime(), TerminatedAt: optTime(), TerminationMode: pick(),
			ExpiredAt: optTime(), LastOperateTime: optTime(), LeaseToken: pick(), NextCheckAt: optTime(),
			CreatedAt: times[r.IntN(len(times))], UpdatedAt: times[r.IntN(len(times))]}
		if r.IntN(2) == 0 {
			ct.LastError = &domain.CallError{Code: pick(), Message: pick(), At: times[r.IntN(len(times))], Retryable: r.IntN(2) == 0, Op: pick()}
		}
		return ct
	}
	check := func(ct domain.Contract) {
		t.Helper()
		want, wantErr := json.Marshal(ct)
		got, err := appendContract(nil, ct)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("appendContract error %v, encoding/json's %v, for %+v", err, wantErr, ct)
		}
		if err == nil && !bytes.Equal(got, want) {
			t.Fatalf("appendContract wrote\n%s\nencoding/json writes\n%s", got, want)
		}
	}
	check(domain.Contract{})
	for _, s := range strs {
		for _, tm := range times {
			check(domain.Contract{OutContractCode: s, UserDisplayName: s, SignedAt: &tm, CreatedAt: tm, UpdatedAt: tm,
				LastError: &domain.CallError{Message: s, At: tm}})
		}
	}
	for range 20_000 {
		check(contract())
	}
}

func ptr[T any](v T) *T { return &v }
