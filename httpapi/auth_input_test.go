package httpapi

import "testing"

func TestBearerTokenSchemeIsCaseInsensitive(t *testing.T) {
	cases := []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc", "abc", true}, {"bearer abc", "abc", true}, {"BEARER abc", "abc", true},
		{"Bearer   abc", "abc", true},
		{"Bearer", "", false}, {"Bearer ", "", false}, {"Basic abc", "", false}, {"abc", "", false},
		{"Bearerx abc", "", false}, {"", "", false},
	}
	for _, tc := range cases {
		token, ok := bearerToken(tc.header)
		if token != tc.token || ok != tc.ok {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tc.header, token, ok, tc.token, tc.ok)
		}
	}
}

func TestQueryParamsCountsAsParseQueryDoes(t *testing.T) {
	cases := []struct {
		raw  string
		want int
	}{
		{"", 0}, {"a=1", 1}, {"a=1&b=2", 2}, {"a=1&&b=2&", 2}, {"&&&", 0}, {"a&a&a", 3},
	}
	for _, tc := range cases {
		if got := queryParams(tc.raw); got != tc.want {
			t.Errorf("queryParams(%q) = %d, want %d", tc.raw, got, tc.want)
		}
	}
}
