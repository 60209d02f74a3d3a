package wechatpay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// flexInt64 decodes an integer sent either as a JSON number or as a string;
// null and the empty string decode to zero.
type flexInt64 int64

// UnmarshalJSON accepts 123, "123", "", and null.
func (n *flexInt64) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if string(data) == "null" {
		*n = 0
		return nil
	}
	text := string(data)
	if len(data) > 0 && data[0] == '"' {
		if err := json.Unmarshal(data, &text); err != nil {
			return fmt.Errorf("decode integer: %w", err)
		}
		text = strings.TrimSpace(text)
		if text == "" {
			*n = 0
			return nil
		}
	}
	v, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return fmt.Errorf("decode integer %s: %w", data, err)
	}
	*n = flexInt64(v)
	return nil
}

// chinaTime is the zone WeChat Pay means when a time carries no offset.
var chinaTime = time.FixedZone("CST", 8*60*60)

// zonelessLayouts are the offset-free time formats some WeChat Pay sources use.
var zonelessLayouts = []string{"2006-01-02T15:04:05", "2006-01-02 15:04:05", "20060102150405"}

// parseTime reads a WeChat Pay time: RFC3339, or one of the older offset-free
// formats taken as China time. The empty string yields the zero time.
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range zonelessLayouts {
		if t, err := time.ParseInLocation(layout, s, chinaTime); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("unrecognised time %q", s)
}
