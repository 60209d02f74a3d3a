package httpapi

import (
	"bytes"
	"encoding/json"
	"net"
	"strconv"
	"strings"

	"github.com/contractd/contractd/domain"
)

// Listener wraps ln so that the answers Go's HTTP server writes by itself,
// before any handler runs (a request line whose URL does not parse, such as
// "/%zz" or a lone "%"; a header value holding a control byte such as 0x7f;
// a missing Host; headers over the size limit; an unknown transfer
// encoding), have the API's JSON error shape like every other answer.
//
// net/http writes those answers in one Write straight to the connection, in
// a fixed plain-text form ("HTTP/1.1 400 Bad Request\r\nContent-Type:
// text/plain; charset=utf-8\r\nConnection: close\r\n\r\n..."). Answers of
// handlers never take that form (they go through the server's buffered
// writer and always carry a Date header), so the wrapper recognises the
// server's own answers exactly and rewrites only them.
func Listener(ln net.Listener) net.Listener { return &jsonErrorListener{ln} }

type jsonErrorListener struct{ net.Listener }

func (l *jsonErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &jsonErrorConn{Conn: c}, nil
}

type jsonErrorConn struct{ net.Conn }

// goErrorHeaders is what net/http puts between its status line and its
// plain-text body when it refuses a request by itself.
const goErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

func (c *jsonErrorConn) Write(p []byte) (int, error) {
	if out, ok := rewriteServerError(p); ok {
		if _, err := c.Conn.Write(out); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// rewriteServerError turns one of net/http's own plain-text refusals into
// the same status with a JSON error body, or reports false for anything
// else.
func rewriteServerError(p []byte) ([]byte, bool) {
	if len(p) > 1024 || !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) {
		return nil, false
	}
	head, text, ok := bytes.Cut(p, []byte(goErrorHeaders))
	if !ok || bytes.Contains(head, []byte("\r\n")) || len(head) < len("HTTP/1.1 400") {
		return nil, false
	}
	status, err := strconv.Atoi(string(head[len("HTTP/1.1 ") : len("HTTP/1.1 ")+3]))
	if err != nil || status < 400 || status > 599 {
		return nil, false
	}
	reason := strings.TrimSpace(string(text))
	if _, detail, ok := strings.Cut(reason, ": "); ok {
		reason = detail
	} else if len(reason) > 4 {
		reason = reason[4:] // "400 Bad Request" -> "Bad Request"
	}
	body, _ := json.Marshal(ErrorBody{Code: domain.CodeParamError,
		Message: "the request cannot be parsed as HTTP: " + strings.ToLower(reason) + " (check the URL's percent escapes and the header values)"})
	var out bytes.Buffer
	out.WriteString("HTTP/1.1 ")
	out.Write(head[len("HTTP/1.1 "):])
	out.WriteString("\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: ")
	out.WriteString(strconv.Itoa(len(body)))
	out.WriteString("\r\n\r\n")
	out.Write(body)
	return out.Bytes(), true
}
