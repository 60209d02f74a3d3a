package domain

import (
	"strings"
	"testing"
)

func TestCheckJSONTextNamesWhatDecodingWouldHide(t *testing.T) {
	long := strings.Repeat("x", MaxTextLength+1)
	cases := []struct {
		name, body string
		want       []FieldError // nil: nothing to refuse
	}{
		{"plain object", `{"a":"b","n":1,"o":{"x":[1,"y"]}}`, nil},
		{"paired surrogates (an emoji)", `{"a":"\ud83d\ude00"}`, nil},
		{"escaped backslash before u", `{"a":"\\ud800"}`, nil},
		{"repeated key", `{"a":"1","a":"2"}`, []FieldError{{"a", "is repeated; each key may appear once"}}},
		{"repeated nested key", `{"o":{"k":1,"k":2}}`, []FieldError{{"o.k", "is repeated; each key may appear once"}}},
		{"same key in two objects", `{"o":{"k":1},"p":{"k":2}}`, nil},
		{"lone high surrogate", `{"note":"\ud800"}`, []FieldError{{"note", "holds an unpaired surrogate escape"}}},
		{"lone low surrogate", `{"note":"x\udc00y"}`, []FieldError{{"note", "holds an unpaired surrogate escape"}}},
		{"high then plain", `{"note":"\ud800x"}`, []FieldError{{"note", "holds an unpaired surrogate escape"}}},
		{"two highs", `{"note":"\ud800\ud800"}`, []FieldError{{"note", "holds an unpaired surrogate escape"}}},
		{"NUL escape", `{"note":"a\u0000b"}`, []FieldError{{"note", "must not contain NUL"}}},
		{"NUL in an array", `{"l":["ok","\u0000"]}`, []FieldError{{"l[1]", "must not contain NUL"}}},
		{"NUL in a key", `{"a\u0000":1}`, []FieldError{{"a\x00", "must not contain NUL"}}},
		{"invalid UTF-8", "{\"name\":\"\xff\"}", []FieldError{{"name", "must be valid UTF-8"}}},
		{"over-long string", `{"s":"` + long + `"}`, []FieldError{{"s", "must be at most 4096 bytes"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckJSONText([]byte(tc.body))
			if len(got) != len(tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("got %+v, want %+v", got[i], tc.want[i])
				}
			}
		})
	}
}

func TestCheckCode(t *testing.T) {
	cases := []struct{ code, want string }{
		{"100001256", ""},
		{"a/b", "must be visible ASCII without '/', '?', '#' or '%'"},
		{"pre-sign", `"pre-sign" is reserved`},
		{strings.Repeat("1", 33), "must be at most 32 characters"},
		{"a\x00b", "must not contain NUL"},
		{"", "is required"},
	}
	for _, tc := range cases {
		if got := CheckCode(tc.code); got != tc.want {
			t.Errorf("CheckCode(%q) = %q, want %q", tc.code, got, tc.want)
		}
	}
}

func TestExpiryRuleSpeaksMinutes(t *testing.T) {
	if got := spoken(MinSessionLifetime); got != "5 minutes" {
		t.Errorf("%q", got)
	}
	if got := spoken(LongSessionLifetime); got != "2 hours" {
		t.Errorf("%q", got)
	}
	if got := spokenRange(MinSessionLifetime, ShortSessionLifetime); got != "5 and 10 minutes" {
		t.Errorf("%q", got)
	}
	if got := spokenRange(MinSessionLifetime, LongSessionLifetime); got != "5 minutes and 2 hours" {
		t.Errorf("%q", got)
	}
}
