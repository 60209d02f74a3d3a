package domain

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxTextLength bounds, in bytes, any one string contractd takes from
// outside (a path, a query value, a header value, a JSON string, a field of
// a notification) before a field's own rule applies.
const MaxTextLength = 4096

// CheckText says why a string from outside cannot be taken as text (it holds
// a NUL or is not valid UTF-8), or "" when it can. Postgres text refuses
// both, and WeChat would show them garbled.
func CheckText(v string) string {
	switch {
	case !utf8.ValidString(v):
		return "must be valid UTF-8"
	case strings.IndexByte(v, 0) >= 0:
		return "must not contain NUL"
	}
	return ""
}

// CheckOpenID says why v cannot be a WeChat openid (or sub_openid), or ""
// when it can: openids are visible ASCII, so a space or a control character
// (CR, LF, BEL, ESC, ...) is never part of one.
func CheckOpenID(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] <= 0x20 || v[i] >= 0x7f {
			return "must be visible ASCII, without spaces or control characters"
		}
	}
	return ""
}

// CheckDisplayText says why v cannot be shown to a person as a line of
// text (a name WeChat shows the user, a termination note), or "" when it
// can. It refuses what would break or disguise the line where it is shown:
// C0 and C1 control characters (DEL and U+0085 included), the line and
// paragraph separators U+2028 and U+2029, and the bidi formatting
// characters that embed, override or isolate text direction (U+202A to
// U+202E, U+2066 to U+2069). Right-to-left text itself is accepted; pages
// show it isolated from what surrounds it. The reason names the first
// refused character.
func CheckDisplayText(v string) string {
	for _, r := range v {
		switch {
		case r < 0x20 || r >= 0x7f && r <= 0x9f:
			return fmt.Sprintf("must not contain control characters (U+%04X)", r)
		case r == 0x2028 || r == 0x2029:
			return fmt.Sprintf("must not contain line or paragraph separators (U+%04X)", r)
		case r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069:
			return fmt.Sprintf("must not contain bidi formatting characters (U+%04X)", r)
		}
	}
	return ""
}

// MaxTerminationNote is the longest termination note, in characters.
const MaxTerminationNote = 120

// CheckTerminationNote applies the one rule for an operator's termination
// note, through the API and the console alike: text that is not blank, at
// most MaxTerminationNote characters, and displayable (CheckDisplayText:
// WeChat shows it, the console renders it). It returns a PARAM_ERROR naming
// the field note, or nil.
func CheckTerminationNote(note string) error {
	var fe fieldErrors
	switch {
	case strings.TrimSpace(note) == "":
		fe.add("note", "is required")
	case CheckText(note) != "":
		fe.add("note", "%s", CheckText(note))
	case utf8.RuneCountInString(note) > MaxTerminationNote:
		fe.add("note", "must be at most %d characters", MaxTerminationNote)
	case CheckDisplayText(note) != "":
		fe.add("note", "%s", CheckDisplayText(note))
	}
	if len(fe) > 0 {
		return &Error{Code: CodeParamError, Message: "the request breaks field rules", Fields: fe}
	}
	return nil
}
