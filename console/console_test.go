package console

import (
	"net/url"
	"testing"

	"github.com/contractd/contractd/domain"
)

func TestMaskHidesMostOfAnOpenID(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"abc", "•••"},
		{"ouFhd5X9s9WteC3eWRjXV3lea123", "ouFh••••••23"},
	}
	for _, tc := range cases {
		if got := mask(tc.in); got != tc.want {
			t.Errorf("mask(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestListFilterReadsTheAPIFilters(t *testing.T) {
	cases := []struct {
		name   string
		query  string
		check  func(f domain.ListFilter) bool
		fields []string
	}{
		{"empty values do not filter", "state=&channel=&plan_id=&sub_mchid=", func(f domain.ListFilter) bool {
			return f.State == "" && f.Channel == "" && f.PlanID == nil && f.SubMchID == nil
		}, nil},
		{"every filter", "state=signed&channel=app&plan_id=123&service_id=7&sub_mchid=1900&created_from=2026-01-02T03:04:05Z&created_to=2026-01-03&limit=10",
			func(f domain.ListFilter) bool {
				return f.State == domain.StateSigned && f.Channel == domain.ChannelApp && *f.PlanID == 123 && *f.ServiceID == 7 &&
					*f.SubMchID == "1900" && f.CreatedFrom.Hour() == 3 && f.CreatedTo.Day() == 3 && f.Limit == 10
			}, nil},
		{"bad values name their fields", "state=done&plan_id=x&created_to=yesterday&limit=501", nil,
			[]string{"state", "plan_id", "created_to", "limit"}},
		{"control characters are refused", "sub_mchid=%00", nil, []string{"sub_mchid"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			f, _, err := listFilter(q)
			if tc.fields == nil {
				if err != nil || !tc.check(f) {
					t.Fatalf("filter %+v, error %v", f, err)
				}
				return
			}
			de, ok := err.(*domain.Error)
			if !ok || len(de.Fields) != len(tc.fields) {
				t.Fatalf("error %v, want fields %v", err, tc.fields)
			}
			for i, fe := range de.Fields {
				if fe.Field != tc.fields[i] {
					t.Fatalf("fields %+v, want %v", de.Fields, tc.fields)
				}
			}
		})
	}
}

func TestEveryPageTemplateParses(t *testing.T) {
	pages := parsePages()
	for _, name := range []string{"overview.html", "contracts.html", "contract.html", "feed.html", "signin.html", "error.html"} {
		if pages[name] == nil {
			t.Errorf("no template %s", name)
		}
	}
}

func TestCSVTextNeutralisesFormulaPrefixes(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""}, {"Zhang San", "Zhang San"}, {"a=1", "a=1"}, {"1-2", "1-2"},
		{"=1+1", "'=1+1"}, {"+1", "'+1"}, {"-1", "'-1"}, {"@SUM(A1)", "'@SUM(A1)"},
		{"\t=1", "'\t=1"}, {"\r=1", "'\r=1"}, {"'=1", "'=1"}, {" =1", " =1"},
	}
	for _, tc := range cases {
		if got := csvText(tc.in); got != tc.want {
			t.Errorf("csvText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
