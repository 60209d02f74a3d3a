package domain_test

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/contractd/contractd/domain"
)

func TestParseListFilter(t *testing.T) {
	i64 := func(n int64) *int64 { return &n }
	str := func(s string) *string { return &s }
	at := func(s string) *time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return &v
	}
	cases := []struct {
		name   string
		query  string
		want   domain.ListFilter
		fields []string // rejected fields, in order; nil when accepted
	}{
		{"nothing filters", "", domain.ListFilter{}, nil},
		{"every filter", "state=signed&channel=app&plan_id=123&service_id=7&sub_mchid=1900&created_from=2026-01-02T03:04:05Z&created_to=2026-01-03T00:00:00%2B08:00&limit=10&cursor=abc",
			domain.ListFilter{State: domain.StateSigned, Channel: domain.ChannelApp, PlanID: i64(123), ServiceID: i64(7), SubMchID: str("1900"),
				CreatedFrom: at("2026-01-02T03:04:05Z"), CreatedTo: at("2026-01-03T00:00:00+08:00"), Limit: 10, Cursor: "abc"}, nil},
		{"empty state, channel and numbers do not filter", "state=&channel=&plan_id=&service_id=&limit=", domain.ListFilter{}, nil},
		{"empty sub_mchid filters on no sub-merchant", "sub_mchid=", domain.ListFilter{SubMchID: str("")}, nil},
		{"limit bounds accepted", "limit=500", domain.ListFilter{Limit: 500}, nil},
		{"unknown parameters are ignored", "colour=red", domain.ListFilter{}, nil},
		{"bogus channel", "channel=bogus", domain.ListFilter{}, []string{"channel"}},
		{"bogus state", "state=done", domain.ListFilter{}, []string{"state"}},
		{"plan_id zero", "plan_id=0", domain.ListFilter{}, []string{"plan_id"}},
		{"plan_id negative", "plan_id=-3", domain.ListFilter{}, []string{"plan_id"}},
		{"service_id not a number", "service_id=x", domain.ListFilter{}, []string{"service_id"}},
		{"sub_mchid breaking the code rule", "sub_mchid=a%2Fb", domain.ListFilter{}, []string{"sub_mchid"}},
		{"date without time", "created_to=2026-01-03", domain.ListFilter{}, []string{"created_to"}},
		{"limit zero", "limit=0", domain.ListFilter{}, []string{"limit"}},
		{"limit over the maximum", "limit=501", domain.ListFilter{}, []string{"limit"}},
		{"every bad value named in order", "limit=x&created_from=yesterday&plan_id=0&channel=bogus&state=done",
			domain.ListFilter{}, []string{"state", "channel", "plan_id", "created_from", "limit"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			f, err := domain.ParseListFilter(q)
			if tc.fields == nil {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if !reflect.DeepEqual(f, tc.want) {
					t.Fatalf("filter %+v, want %+v", f, tc.want)
				}
				return
			}
			checkFields(t, err, "bad query parameters: ", tc.fields)
		})
	}
}

func TestParseKey(t *testing.T) {
	cases := []struct {
		name, code, sub string
		fields          []string
	}{
		{"code alone", "C-1", "", nil},
		{"code and sub-merchant", "C-1", "1900000109", nil},
		{"code missing", "", "", []string{"out_contract_code"}},
		{"code too long", strings.Repeat("1", 33), "", []string{"out_contract_code"}},
		{"code with a slash", "a/b", "", []string{"out_contract_code"}},
		{"reserved code", "pre-sign", "", []string{"out_contract_code"}},
		{"bad sub-merchant", "C-1", "a b", []string{"sub_mchid"}},
		{"both bad", "", "a%b", []string{"out_contract_code", "sub_mchid"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := domain.ParseKey(tc.code, tc.sub)
			if tc.fields == nil {
				if err != nil || k != (domain.Key{SubMchID: tc.sub, OutContractCode: tc.code}) {
					t.Fatalf("key %+v, error %v", k, err)
				}
				return
			}
			checkFields(t, err, "bad contract key: ", tc.fields)
		})
	}
}

// checkFields asserts a PARAM_ERROR rejecting exactly fields, in order,
// whose message starts with prefix and names each of them.
func checkFields(t *testing.T, err error, prefix string, fields []string) {
	t.Helper()
	var de *domain.Error
	if !errors.As(err, &de) || de.Code != domain.CodeParamError || len(de.Fields) != len(fields) {
		t.Fatalf("error %v, want a PARAM_ERROR on %v", err, fields)
	}
	if !strings.HasPrefix(de.Message, prefix) {
		t.Errorf("message %q, want it to start %q", de.Message, prefix)
	}
	for i, fe := range de.Fields {
		if fe.Field != fields[i] || fe.Reason == "" {
			t.Fatalf("fields %+v, want %v", de.Fields, fields)
		}
		if !strings.Contains(de.Message, fe.Field+" "+fe.Reason) {
			t.Errorf("message %q does not say %q", de.Message, fe.Field+" "+fe.Reason)
		}
	}
}
