package domain

import (
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
