package console

import (
	"html"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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
		{"every filter", "state=signed&channel=app&plan_id=123&service_id=7&sub_mchid=1900&created_from=2026-01-02T03:04:05Z&created_to=2026-01-03T00:00:00Z&limit=10",
			func(f domain.ListFilter) bool {
				return f.State == domain.StateSigned && f.Channel == domain.ChannelApp && *f.PlanID == 123 && *f.ServiceID == 7 &&
					*f.SubMchID == "1900" && f.CreatedFrom.Hour() == 3 && f.CreatedTo.Day() == 3 && f.Limit == 10
			}, nil},
		{"bad values name their fields", "state=done&plan_id=x&created_to=yesterday&limit=501", nil,
			[]string{"state", "plan_id", "created_to", "limit"}},
		{"control characters are refused", "sub_mchid=%00", nil, []string{"sub_mchid"}},
		{"a bogus channel is refused, as the API refuses it", "channel=bogus", nil, []string{"channel"}},
		{"plan_id 0 is refused, as the API refuses it", "plan_id=0", nil, []string{"plan_id"}},
		{"a negative service_id is refused", "service_id=-1", nil, []string{"service_id"}},
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

// TestListPageShowsTheAPIRefusal: the list page refuses the filters the
// API refuses, with a 400 and the API's message on the page, instead of
// listing as if they were not there.
func TestListPageShowsTheAPIRefusal(t *testing.T) {
	c := &Console{pages: parsePages(), log: slog.New(slog.DiscardHandler)}
	cases := []struct{ query, says string }{
		{"channel=bogus", "channel is not a signing channel"},
		{"plan_id=0", "plan_id must be a positive integer"},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			_, apiErr := domain.ParseListFilter(url.Values{strings.Split(tc.query, "=")[0]: {strings.Split(tc.query, "=")[1]}})
			if apiErr == nil {
				t.Fatalf("the API's parser accepts %s", tc.query)
			}
			w := httptest.NewRecorder()
			c.listPage(w, httptest.NewRequest(http.MethodGet, "/ops/contracts?"+tc.query, nil))
			body := w.Body.String()
			if w.Code != http.StatusBadRequest || !strings.Contains(body, tc.says) || !strings.Contains(body, html.EscapeString(apiErr.Error())) {
				t.Fatalf("status %d, want 400 and the page saying %q (%q); body:\n%s", w.Code, tc.says, apiErr.Error(), body)
			}
		})
	}
}

func TestEveryPageTemplateParses(t *testing.T) {
	pages := parsePages()
	for _, name := range []string{"overview.html", "contracts.html", "contract.html", "feed.html", "signin.html", "error.html", "webhooks.html", "webhook.html"} {
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
