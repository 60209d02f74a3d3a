package domain

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckOpenIDTakesVisibleASCIIOnly(t *testing.T) {
	cases := []struct{ in, want string }{
		{"o-MYE42l80oelYMDE34nYD456Xoy", ""}, {"o_demo-user", ""}, {"", ""},
		{"o\r1", "must be visible ASCII, without spaces or control characters"},
		{"o\n1", "must be visible ASCII, without spaces or control characters"},
		{"o\a1", "must be visible ASCII, without spaces or control characters"},
		{"o\x1b1", "must be visible ASCII, without spaces or control characters"},
		{"o 1", "must be visible ASCII, without spaces or control characters"},
		{"o\x7f", "must be visible ASCII, without spaces or control characters"},
		{"oé", "must be visible ASCII, without spaces or control characters"},
	}
	for _, tc := range cases {
		if got := CheckOpenID(tc.in); got != tc.want {
			t.Errorf("CheckOpenID(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCheckDisplayTextRefusesControlsSeparatorsAndBidiControls(t *testing.T) {
	cases := []struct{ in, want string }{
		{"Zhang San", ""}, {"张三", ""}, {"محمد علي", ""}, {"שלום", ""}, {"a\u200fb", ""}, // a right-to-left mark is text
		{"a\tb", "must not contain control characters (U+0009)"},
		{"a\x00b", "must not contain control characters (U+0000)"},
		{"a\x7fb", "must not contain control characters (U+007F)"},
		{"a\u0085b", "must not contain control characters (U+0085)"},
		{"a\u009fb", "must not contain control characters (U+009F)"},
		{"a\u2028b", "must not contain line or paragraph separators (U+2028)"},
		{"a\u2029b", "must not contain line or paragraph separators (U+2029)"},
		{"a\u202ab", "must not contain bidi formatting characters (U+202A)"},
		{"a\u202eb", "must not contain bidi formatting characters (U+202E)"},
		{"a\u2066b", "must not contain bidi formatting characters (U+2066)"},
		{"a\u2069b", "must not contain bidi formatting characters (U+2069)"},
	}
	for _, tc := range cases {
		if got := CheckDisplayText(tc.in); got != tc.want {
			t.Errorf("CheckDisplayText(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// The one rule for termination notes, which the API and the console share.
func TestCheckTerminationNote(t *testing.T) {
	cases := []struct{ note, reason string }{
		{"customer asked", ""},
		{"客户要求解约", ""},
		{strings.Repeat("x", 120), ""},
		{strings.Repeat("字", 120), ""},
		{"", "is required"},
		{"   ", "is required"},
		{strings.Repeat("x", 121), "must be at most 120 characters"},
		{"a\x00b", "must not contain NUL"},
		{"a\xffb", "must be valid UTF-8"},
		{"a\ab", "must not contain control characters (U+0007)"},
		{"a\nb", "must not contain control characters (U+000A)"},
		{"a\u0085b", "must not contain control characters (U+0085)"},
		{"a\u2028b", "must not contain line or paragraph separators (U+2028)"},
		{"a\u202eb", "must not contain bidi formatting characters (U+202E)"},
	}
	for _, tc := range cases {
		err := CheckTerminationNote(tc.note)
		if tc.reason == "" {
			if err != nil {
				t.Errorf("CheckTerminationNote(%q) = %v, want nil", tc.note, err)
			}
			continue
		}
		var de *Error
		if !errors.As(err, &de) || de.Code != CodeParamError || len(de.Fields) != 1 ||
			de.Fields[0] != (FieldError{Field: "note", Reason: tc.reason}) {
			t.Errorf("CheckTerminationNote(%q) = %#v, want note %q", tc.note, err, tc.reason)
		}
	}
}
