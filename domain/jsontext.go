package domain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxNamedBytes bounds a field name taken from input when it is named in an
// error.
const maxNamedBytes = 128

// clip cuts text from outside for a message, on a character boundary,
// marking the cut.
func clip(s string) string {
	if len(s) <= maxNamedBytes {
		return s
	}
	cut := maxNamedBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// CheckJSONText walks a JSON document and refuses, naming the field, what
// encoding/json would accept silently: a repeated key (the last would win),
// an unpaired surrogate escape (it would become U+FFFD), a NUL, and a
// string over MaxTextLength, each as a FieldError (at most a few dozen).
// Syntax errors are left to the decoder.
func CheckJSONText(b []byte) []FieldError {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		object bool
		keys   map[string]bool
		next   string // the key whose value comes next (objects)
		index  int    // the next element's index (arrays)
		path   string
	}
	var stack []*frame
	var fields []FieldError
	bad := func(field, reason string) {
		if field == "" {
			field = "body"
		}
		fields = append(fields, FieldError{Field: field, Reason: reason})
	}
	// where names the value about to be read.
	where := func() string {
		if len(stack) == 0 {
			return ""
		}
		f := stack[len(stack)-1]
		var name string
		if f.object {
			name = f.next
		} else {
			name = "[" + strconv.Itoa(f.index) + "]"
		}
		switch {
		case f.path == "":
			return name
		case f.object:
			return f.path + "." + name
		default:
			return f.path + name
		}
	}
	// expectKey reports whether the next string token is an object's key.
	expectKey := func() bool {
		return len(stack) > 0 && stack[len(stack)-1].object && stack[len(stack)-1].next == ""
	}
	afterValue := func() {
		if len(stack) == 0 {
			return
		}
		f := stack[len(stack)-1]
		if f.object {
			f.next = ""
		} else {
			f.index++
		}
	}
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			break // io.EOF or a syntax error the decoder reports later
		}
		end := dec.InputOffset()
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				stack = append(stack, &frame{object: t == '{', keys: map[string]bool{}, path: where()})
			case '}', ']':
				stack = stack[:len(stack)-1]
				afterValue()
			}
		case string:
			key := expectKey()
			field := where()
			if key {
				field = t
				if p := stack[len(stack)-1].path; p != "" {
					field = p + "." + t
				}
			}
			if why := rawStringProblem(b[start:end]); why != "" {
				bad(clip(field), why)
			} else if why := CheckText(t); why != "" {
				bad(clip(field), why)
			} else if len(t) > MaxTextLength {
				bad(clip(field), fmt.Sprintf("must be at most %d bytes", MaxTextLength))
			}
			if key {
				f := stack[len(stack)-1]
				if f.keys[t] {
					bad(clip(field), "is repeated; each key may appear once")
				}
				f.keys[t] = true
				f.next = t
				if t == "" {
					f.next = `""`
				}
				continue
			}
			afterValue()
		default:
			afterValue()
		}
		if len(fields) > 16 {
			break
		}
	}
	return fields
}

// rawStringProblem scans the raw bytes of one JSON string token (with the
// delimiters around it) for invalid UTF-8 and an unpaired UTF-16 surrogate
// escape, both of which encoding/json turns into U+FFFD without a word.
func rawStringProblem(raw []byte) string {
	if !utf8.Valid(raw) {
		return "must be valid UTF-8"
	}
	i := bytes.IndexByte(raw, '"')
	if i < 0 {
		return ""
	}
	pendingHigh := false
	for i++; i < len(raw); i++ {
		ch := raw[i]
		if ch == '"' {
			break
		}
		if ch != '\\' {
			if pendingHigh {
				return "holds an unpaired surrogate escape"
			}
			continue
		}
		if i+1 >= len(raw) {
			break
		}
		if raw[i+1] != 'u' || i+6 > len(raw) {
			if pendingHigh {
				return "holds an unpaired surrogate escape"
			}
			i++
			continue
		}
		n, err := strconv.ParseUint(string(raw[i+2:i+6]), 16, 16)
		if err != nil {
			return ""
		}
		switch {
		case n >= 0xD800 && n <= 0xDBFF:
			if pendingHigh {
				return "holds an unpaired surrogate escape"
			}
			pendingHigh = true
		case n >= 0xDC00 && n <= 0xDFFF:
			if !pendingHigh {
				return "holds an unpaired surrogate escape"
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return "holds an unpaired surrogate escape"
			}
		}
		i += 5
	}
	if pendingHigh {
		return "holds an unpaired surrogate escape"
	}
	return ""
}
