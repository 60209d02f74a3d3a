package httpapi

import (
	"net"
	"net/http/httptest"
	"testing"
)

func TestClientIP(t *testing.T) {
	cidrs := func(ss ...string) []*net.IPNet {
		var out []*net.IPNet
		for _, s := range ss {
			_, n, err := net.ParseCIDR(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		return out
	}
	cases := []struct {
		name    string
		trusted []*net.IPNet
		peer    string
		xff     string
		want    string
	}{
		{"no proxies: the peer, whatever it forwards", nil, "127.0.0.1:5000", "203.0.113.7", "127.0.0.1"},
		{"no proxies, a private peer", nil, "10.0.0.5:5000", "203.0.113.7", "10.0.0.5"},
		{"a trusted proxy names its client", cidrs("10.0.0.0/8"), "10.0.0.5:5000", "203.0.113.7", "203.0.113.7"},
		{"the nearest untrusted address of a chain", cidrs("10.0.0.0/8"), "10.0.0.5:5000", "198.51.100.1, 203.0.113.7, 10.0.0.9", "203.0.113.7"},
		{"loopback is not trusted unless listed", cidrs("10.0.0.0/8"), "127.0.0.1:5000", "203.0.113.7", "127.0.0.1"},
		{"nor another private range", cidrs("10.0.0.0/8"), "192.168.1.2:5000", "203.0.113.7", "192.168.1.2"},
		{"nor link-local", cidrs("10.0.0.0/8"), "[fe80::1]:5000", "203.0.113.7", "fe80::1"},
		{"a private client behind the proxy is the client", cidrs("10.0.0.0/8"), "10.0.0.5:5000", "192.168.7.7", "192.168.7.7"},
		{"loopback when listed", cidrs("127.0.0.1/32"), "127.0.0.1:5000", "203.0.113.7", "203.0.113.7"},
		{"no header from a proxy: the proxy", cidrs("10.0.0.0/8"), "10.0.0.5:5000", "", "10.0.0.5"},
		{"a garbled header: the peer", cidrs("10.0.0.0/8"), "10.0.0.5:5000", "203.0.113.7, not-an-ip", "10.0.0.5"},
		{"IPv6 client", cidrs("10.0.0.0/8"), "10.0.0.5:5000", "2001:db8::7", "2001:db8::7"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tc.peer
			if tc.xff != "" {
				r.Header.Set("X-Forwarded-For", tc.xff)
			}
			if got := ClientIP(tc.trusted)(r); got != tc.want {
				t.Fatalf("client %q, want %q", got, tc.want)
			}
		})
	}
}

func TestThrottleKey(t *testing.T) {
	cases := []struct{ addr, want string }{
		{"203.0.113.7", "203.0.113.7"},
		{"::ffff:203.0.113.7", "203.0.113.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"", ""},
		{"not-an-address", "not-an-address"},
	}
	for _, tc := range cases {
		if got := ThrottleKey(tc.addr); got != tc.want {
			t.Errorf("ThrottleKey(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}
